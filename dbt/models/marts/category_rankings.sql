{#-
    Per category and level, the support figures and three rankings. Only chats whose category_status is
    `ok` count. `leaf` = the chat's own category, `root` = the root of its tree; one grouping-sets pass
    computes both levels. Ranks are row numbers within a level: ties go to the lower category_id.
-#}

with

categorised_chats as (

    select
        category_id,
        root_category_id,
        is_customer_initiated,
        is_resolved,
        {{ epoch_us('resolved_at_utc') }} - {{ epoch_us('created_at_utc') }} as resolution_us
    from {{ ref('fct_chats') }}
    where category_status = 'ok'

),

figures as (

    select
        case when grouping(category_id) = 0 then 'leaf' else 'root' end as category_level,
        coalesce(category_id, root_category_id) as category_id,
        count(*) filter (where is_customer_initiated) as customer_initiated_chats,
        count(*) as total_chats,
        count(*) filter (where is_resolved) as resolved_chats,
        avg(resolution_us) / 3600000000.0 as avg_resolution_hours
    from categorised_chats
    group by grouping sets ((category_id), (root_category_id))

),

measured as (

    select
        category_level,
        category_id,
        customer_initiated_chats,
        total_chats,
        resolved_chats,
        cast(resolved_chats as double) * 100 / total_chats as resolution_rate_pct,
        avg_resolution_hours
    from figures
    where category_id is not null

),

final as (

    select
        category_level,
        category_id,
        customer_initiated_chats,
        total_chats,
        resolved_chats,
        resolution_rate_pct,
        avg_resolution_hours,
        row_number() over (
            partition by category_level
            order by customer_initiated_chats desc, category_id asc
        ) as rank_customer_chats,
        row_number() over (
            partition by category_level
            order by resolution_rate_pct asc, category_id asc
        ) as rank_lowest_resolution_rate,
        case
            when resolved_chats > 0
                then row_number() over (
                        partition by category_level, resolved_chats > 0
                        order by avg_resolution_hours asc, category_id asc
                    )
        end as rank_fastest_resolution
    from measured

)

select * from final
