{#-
    Every quarantined chats row with its reasons (every rule that applies, in the order of
    docs/data-contract.md; the first is `reason`), its source text and lineage. The resolution table
    keeps flags, not reason lists, and no raw text (see int_chat_versions_classified), so the text
    comes from staging, read only in the batches that hold a quarantined row.
-#}

with

quarantined_versions as (

    select
        resolution_key,
        {{ quarantine_reasons('is_conflicting_duplicate') }} as quarantine_reasons,
        _batch_id,
        _line_number
    from {{ ref('int_chat_versions_classified') }}
    where disposition = 'quarantined'

),

staged_chats as (

    select
        raw_id,
        raw_chat_category_id,
        raw_created_at,
        raw_is_customer_initiated,
        raw_resolved_at,
        _batch_id,
        _source_file,
        _source_sha256,
        _extract_date,
        _line_number,
        _ingested_at
    from {{ ref('stg_raw__chats') }}
    where _batch_id in (select distinct quarantined_versions._batch_id from quarantined_versions)

),

final as (

    select
        nullif(quarantined_versions.resolution_key, '') as chat_id,
        {{ first_element('quarantined_versions.quarantine_reasons') }} as reason,
        quarantined_versions.quarantine_reasons as reasons,
        staged_chats.raw_id,
        staged_chats.raw_chat_category_id,
        staged_chats.raw_created_at,
        staged_chats.raw_is_customer_initiated,
        staged_chats.raw_resolved_at,
        staged_chats._batch_id,
        staged_chats._source_file,
        staged_chats._source_sha256,
        staged_chats._extract_date,
        staged_chats._line_number,
        staged_chats._ingested_at
    from quarantined_versions
    inner join staged_chats
        on
            quarantined_versions._batch_id = staged_chats._batch_id
            and quarantined_versions._line_number = staged_chats._line_number

)

select * from final
