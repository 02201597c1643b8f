with

daily_resolutions as (

    select customer_initiated_resolved
    from {{ ref('daily_resolutions') }}

),

final as (

    select
        cast(median(customer_initiated_resolved) as double) as median_per_day,
        count(*) as days_counted
    from daily_resolutions

)

select * from final
