{#-
    One row per raw categories row of every snapshot, typed. `is_in_newest_snapshot` marks the rows of
    the snapshot the warehouse uses: newest `_extract_date`, then highest `_batch_id`. Older snapshots
    stay available here and in raw.
-#}

with

source_categories as (

    select
        id,
        parent_id,
        disabled,
        _batch_id,
        _source_file,
        _source_sha256,
        _extract_date,
        _line_number,
        _ingested_at
    from {{ source('raw', 'categories') }}

),

newest_snapshot as (

    select
        _extract_date,
        _batch_id
    from source_categories
    order by _extract_date desc, _batch_id desc
    limit 1

),

final as (

    select
        {{ clean_text('source_categories.id') }} as category_id,
        {{ clean_text('source_categories.parent_id') }} as parent_id,
        {{ parse_boolean('source_categories.disabled') }} as disabled_raw,
        not {{ is_missing('source_categories.disabled') }}
        and {{ parse_boolean('source_categories.disabled') }} is null as is_invalid_disabled,
        newest_snapshot._batch_id is not null as is_in_newest_snapshot,
        source_categories.id as raw_id,
        source_categories.parent_id as raw_parent_id,
        source_categories.disabled as raw_disabled,
        source_categories._batch_id,
        source_categories._source_file,
        source_categories._source_sha256,
        source_categories._extract_date,
        source_categories._line_number,
        source_categories._ingested_at
    from source_categories
    left join newest_snapshot
        on
            source_categories._extract_date = newest_snapshot._extract_date
            and source_categories._batch_id = newest_snapshot._batch_id

)

select * from final
