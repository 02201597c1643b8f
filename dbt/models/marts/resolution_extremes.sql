with

daily_resolutions as (

    select
        resolution_date,
        chats_resolved
    from {{ ref('daily_resolutions') }}

),

ranked_days as (

    select
        resolution_date,
        chats_resolved,
        row_number() over (order by chats_resolved asc, resolution_date asc) as rank_lowest,
        row_number() over (order by chats_resolved desc, resolution_date asc) as rank_highest
    from daily_resolutions

),

final as (

    select
        'lowest' as extreme,
        resolution_date,
        chats_resolved
    from ranked_days
    where rank_lowest = 1

    union all

    select
        'highest' as extreme,
        resolution_date,
        chats_resolved
    from ranked_days
    where rank_highest = 1

)

select * from final
