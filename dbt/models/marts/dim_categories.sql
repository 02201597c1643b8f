with

category_tree as (

    select
        category_id,
        parent_id,
        root_category_id,
        depth,
        path,
        disabled_raw,
        is_disabled_effective
    from {{ ref('int_category_tree') }}

),

final as (

    select * from category_tree

)

select * from final
