with

quarantined_versions as (

    select
        chat_id,
        quarantine_reason,
        quarantine_reasons,
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
    from {{ ref('int_chat_versions_classified') }}
    where disposition = 'quarantined'

),

final as (

    select
        chat_id,
        quarantine_reason as reason,
        quarantine_reasons as reasons,
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
    from quarantined_versions

)

select * from final
