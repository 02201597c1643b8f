{{ config(materialized='view') }}

with

category_rankings as (

    select
        category_level,
        rank_lowest_resolution_rate,
        category_id,
        customer_initiated_chats,
        total_chats,
        resolved_chats,
        resolution_rate_pct,
        avg_resolution_hours
    from {{ ref('category_rankings') }}

),

final as (

    select *
    from category_rankings
    where rank_lowest_resolution_rate <= 10

)

select * from final
