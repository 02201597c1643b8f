{#-
    One row per raw chats row, typed with safe casts. A view: the only consumer,
    int_chat_versions_classified, reads just the batches it has not resolved yet (plus the history of
    the chat ids they touch), so a table here would copy every raw row once more for nothing (writing
    11.9 M rows of text cost more than all the parsing; see the README's performance section).
-#}

with

source_chats as (

    select
        id,
        chat_category_id,
        created_at,
        is_customer_initiated,
        resolved_at,
        _batch_id,
        _source_file,
        _source_sha256,
        _extract_date,
        _line_number,
        _ingested_at
    from {{ source('raw', 'chats') }}

),

{# Each timestamp is split by the pattern once (parsing.sql); the typed values come from the parts. #}
split as (

    select
        *,
        {{ timestamp_parts('created_at') }} as created_at_parts,
        {{ timestamp_parts('resolved_at') }} as resolved_at_parts
    from source_chats

),

typed as (

    select
        {{ clean_text('id') }} as chat_id,
        {{ clean_text('chat_category_id') }} as category_id,
        {{ parse_boolean('is_customer_initiated') }} as is_customer_initiated,
        {{ utc_timestamp('created_at', 'created_at_parts') }} as created_at_utc,
        {{ utc_timestamp('resolved_at', 'resolved_at_parts') }} as resolved_at_utc,
        {{ is_missing('resolved_at') }} as is_resolved_at_missing,
        id as raw_id,
        chat_category_id as raw_chat_category_id,
        created_at as raw_created_at,
        is_customer_initiated as raw_is_customer_initiated,
        resolved_at as raw_resolved_at,
        _batch_id,
        _source_file,
        _source_sha256,
        _extract_date,
        _line_number,
        _ingested_at
    from split

),

final as (

    select
        chat_id,
        category_id,
        is_customer_initiated,
        created_at_utc,
        resolved_at_utc,
        chat_id is null as is_missing_id,
        created_at_utc is null as is_invalid_created_at,
        resolved_at_utc is null and not is_resolved_at_missing as is_invalid_resolved_at,
        coalesce(resolved_at_utc < created_at_utc, false) as is_resolved_before_created,
        is_customer_initiated is null as is_invalid_is_customer_initiated,
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
    from typed

)

select * from final
