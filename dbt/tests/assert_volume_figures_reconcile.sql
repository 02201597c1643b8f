{#-
    Every chat counts in volume figures whatever its category: the daily resolutions add up to the
    resolved chats of fct_chats, and the hourly grid adds up to all chats. Returns one row per figure
    that does not reconcile.
-#}

with

fct_counts as (

    select
        count(*) as chats,
        count(*) filter (where is_resolved) as resolved_chats,
        count(*) filter (where is_resolved and is_customer_initiated) as customer_resolved_chats
    from {{ ref('fct_chats') }}

),

daily_counts as (

    select
        coalesce(sum(chats_resolved), 0) as resolved_chats,
        coalesce(sum(customer_initiated_resolved), 0) as customer_resolved_chats
    from {{ ref('daily_resolutions') }}

),

hourly_counts as (

    select coalesce(sum(chats), 0) as chats
    from {{ ref('hourly_distribution') }}

),

final as (

    select
        'daily_resolutions.chats_resolved' as figure,
        fct_counts.resolved_chats as expected,
        daily_counts.resolved_chats as actual
    from fct_counts cross join daily_counts

    union all

    select
        'daily_resolutions.customer_initiated_resolved' as figure,
        fct_counts.customer_resolved_chats as expected,
        daily_counts.customer_resolved_chats as actual
    from fct_counts cross join daily_counts

    union all

    select
        'hourly_distribution.chats' as figure,
        fct_counts.chats as expected,
        hourly_counts.chats as actual
    from fct_counts cross join hourly_counts

)

select * from final
where expected != actual
