{#
    The ten categories per level by one of category_rankings' ranks, every figure of the category:
    the three top-ten views (top_categories_customer_chats, lowest_resolution_rate_categories,
    fastest_resolution_categories) are this macro with their rank column.
#}
{% macro top_ten_categories(rank_column) %}

with

category_rankings as (

    select
        category_level,
        {{ rank_column }},
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
    where {{ rank_column }} <= 10

)

select * from final

{% endmacro %}
