{#-
    The category snapshot in force: the rows of the newest snapshot (newest `_extract_date`, then
    highest `_batch_id`), one per category id. Rows without an id are dropped (nothing can refer to
    them); should an id repeat within the snapshot, its last line wins. Both are reported by tests on
    stg_raw__categories.
-#}

with

staged_categories as (

    select
        category_id,
        parent_id,
        disabled_raw,
        _batch_id,
        _source_file,
        _extract_date,
        _line_number
    from {{ ref('stg_raw__categories') }}
    where is_in_newest_snapshot and category_id is not null

),

numbered as (

    select
        *,
        row_number() over (partition by category_id order by _line_number desc) as line_rank
    from staged_categories

),

final as (

    select
        category_id,
        parent_id,
        disabled_raw,
        _batch_id,
        _source_file,
        _extract_date,
        _line_number
    from numbered
    where line_rank = 1

)

select * from final
