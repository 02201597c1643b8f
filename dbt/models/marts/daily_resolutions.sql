with

resolved_chats as (

    select
        resolved_date_local,
        is_customer_initiated
    from {{ ref('fct_chats') }}
    where is_resolved

),

resolutions_per_day as (

    select
        resolved_date_local as resolution_date,
        count(*) as chats_resolved,
        count(*) filter (where is_customer_initiated) as customer_initiated_resolved
    from resolved_chats
    group by resolved_date_local

),

span as (

    select
        min(resolution_date) as first_date,
        max(resolution_date) as last_date
    from resolutions_per_day

),

calendar as (

    select {{ date_series('first_date', 'last_date') }} as resolution_date
    from span

),

final as (

    select
        calendar.resolution_date,
        coalesce(resolutions_per_day.chats_resolved, 0) as chats_resolved,
        coalesce(resolutions_per_day.customer_initiated_resolved, 0) as customer_initiated_resolved
    from calendar
    left join resolutions_per_day
        on calendar.resolution_date = resolutions_per_day.resolution_date

)

select * from final
