{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='resolution_key',
        on_schema_change='fail',
    )
}}

{#-
    Every staged chats row with its disposition, applying docs/data-contract.md in order:
      1. exact duplicates (equal in all five source columns, whatever the file) collapse to the first
         in version order (_extract_date, _batch_id, _line_number): the others are `collapsed`;
      2. after collapsing, two or more rows with one id in one file (batch) are conflicting duplicates;
      3. invalid rows are `quarantined`; reasons in the fixed order, the first is the reason;
      4. of the remaining rows, the last version of each id is the `chat`; earlier ones `superseded`.

    Every rule only ever compares rows that share a chat id (exact duplicates share the raw id text and so
    the cleaned id; rows without an id only collapse among themselves). `resolution_key` (the chat id, or
    '' for rows without one) is therefore a closed unit of work: an incremental run re-resolves every row
    of each key that appears in a new batch, and replaces those keys (delete+insert). A new batch carrying
    a newer version, an exact or a conflicting copy of an old chat re-resolves that chat's whole history,
    so the result equals a full refresh.
-#}

with

staged_chats as (

    select
        coalesce(chat_id, '') as resolution_key,
        chat_id,
        category_id,
        is_customer_initiated,
        created_at_utc,
        created_at_local,
        resolved_at_utc,
        resolved_at_local,
        is_missing_id,
        is_invalid_created_at,
        is_invalid_resolved_at,
        is_resolved_before_created,
        is_invalid_is_customer_initiated,
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

),

{% if is_incremental() %}

    touched_keys as (

        select distinct resolution_key
        from staged_chats
        where _batch_id > (select coalesce(max(classified._batch_id), -1) as max_batch_id from {{ this }} as classified)

    ),

{% endif %}

candidate_rows as (

    select *
    from staged_chats
    {% if is_incremental() %}
        where resolution_key in (select touched_keys.resolution_key from touched_keys)
    {% endif %}

),

exact_duplicates as (

    select
        *,
        row_number() over (
            partition by raw_id, raw_chat_category_id, raw_created_at, raw_is_customer_initiated, raw_resolved_at
            order by _extract_date, _batch_id, _line_number
        ) > 1 as is_collapsed_duplicate
    from candidate_rows

),

conflicting_duplicates as (

    select
        *,
        not is_collapsed_duplicate
        and not is_missing_id
        and count_if(not is_collapsed_duplicate) over (partition by resolution_key, _batch_id) > 1
            as is_conflicting_duplicate
    from exact_duplicates

),

quarantine_reasons as (

    select
        *,
        (case when is_missing_id then ['missing_id'] else []::varchar[] end)
        || (case when is_invalid_created_at then ['invalid_created_at'] else []::varchar[] end)
        || (case when is_invalid_resolved_at then ['invalid_resolved_at'] else []::varchar[] end)
        || (case when is_resolved_before_created then ['resolved_before_created'] else []::varchar[] end)
        || (
            case when is_invalid_is_customer_initiated then ['invalid_is_customer_initiated'] else []::varchar[] end
        )
        || (case when is_conflicting_duplicate then ['conflicting_duplicate'] else []::varchar[] end)
            as quarantine_reasons
    from conflicting_duplicates

),

versions as (

    select
        *,
        not is_collapsed_duplicate and len(quarantine_reasons) = 0 as is_valid_version
    from quarantine_reasons

),

final as (

    select
        resolution_key,
        chat_id,
        case
            when is_collapsed_duplicate then 'collapsed'
            when not is_valid_version then 'quarantined'
            when
                row_number() over (
                    partition by resolution_key, is_valid_version
                    order by _extract_date desc, _batch_id desc, _line_number desc
                ) = 1
                then 'chat'
            else 'superseded'
        end as disposition,
        case when not is_collapsed_duplicate then quarantine_reasons[1] end as quarantine_reason,
        case when not is_collapsed_duplicate then quarantine_reasons else []::varchar[] end as quarantine_reasons,
        category_id,
        is_customer_initiated,
        created_at_utc,
        created_at_local,
        resolved_at_utc,
        resolved_at_local,
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
    from versions

)

select * from final
