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

    Performance: the three window passes (collapse, conflict, supersede) run on a narrow projection
    (keys, raw text, version, flags); the wide typed row is joined back once at the end on the raw row's
    identity (_batch_id, _line_number). Staging is read twice instead of through one CTE, which DuckDB
    would materialise in full.
-#}

with

{% if is_incremental() %}

    touched_keys as (

        select distinct coalesce(chat_id, '') as resolution_key
        from {{ ref('stg_raw__chats') }}
        where _batch_id > {{ max_batch_id(this) }}

    ),

{% endif %}

version_rows as (

    select
        coalesce(chat_id, '') as resolution_key,
        raw_id,
        raw_chat_category_id,
        raw_created_at,
        raw_is_customer_initiated,
        raw_resolved_at,
        _extract_date,
        _batch_id,
        _line_number,
        is_missing_id,
        is_invalid_created_at,
        is_invalid_resolved_at,
        is_resolved_before_created,
        is_invalid_is_customer_initiated
    from {{ ref('stg_raw__chats') }}
    {% if is_incremental() %}
        where coalesce(chat_id, '') in (select touched_keys.resolution_key from touched_keys)
    {% endif %}

),

staged_chats as (

    select
        chat_id,
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
    from {{ ref('stg_raw__chats') }}
    {% if is_incremental() %}
        where coalesce(chat_id, '') in (select touched_keys.resolution_key from touched_keys)
    {% endif %}

),

exact_duplicates as (

    select
        resolution_key,
        _extract_date,
        _batch_id,
        _line_number,
        is_missing_id,
        is_invalid_created_at,
        is_invalid_resolved_at,
        is_resolved_before_created,
        is_invalid_is_customer_initiated,
        row_number() over (
            partition by raw_id, raw_chat_category_id, raw_created_at, raw_is_customer_initiated, raw_resolved_at
            order by _extract_date, _batch_id, _line_number
        ) > 1 as is_collapsed_duplicate
    from version_rows

),

conflicting_duplicates as (

    select
        *,
        not is_collapsed_duplicate
        and not is_missing_id
        and count(*) filter (where not is_collapsed_duplicate) over (partition by resolution_key, _batch_id) > 1
            as is_conflicting_duplicate
    from exact_duplicates

),

validated as (

    select
        *,
        not is_collapsed_duplicate
        and (
            is_missing_id
            or is_invalid_created_at
            or is_invalid_resolved_at
            or is_resolved_before_created
            or is_invalid_is_customer_initiated
            or is_conflicting_duplicate
        ) as is_quarantined
    from conflicting_duplicates

),

dispositions as (

    select
        _batch_id,
        _line_number,
        resolution_key,
        case
            when is_collapsed_duplicate then 'collapsed'
            when is_quarantined then 'quarantined'
            when
                row_number() over (
                    partition by resolution_key, is_collapsed_duplicate or is_quarantined
                    order by _extract_date desc, _batch_id desc, _line_number desc
                ) = 1
                then 'chat'
            else 'superseded'
        end as disposition,
        case
            when is_quarantined
                then
                    (case when is_missing_id then ['missing_id'] else []::varchar[] end)
                    || (case when is_invalid_created_at then ['invalid_created_at'] else []::varchar[] end)
                    || (case when is_invalid_resolved_at then ['invalid_resolved_at'] else []::varchar[] end)
                    || (
                        case when is_resolved_before_created then ['resolved_before_created'] else []::varchar[] end
                    )
                    || (
                        case
                            when is_invalid_is_customer_initiated then ['invalid_is_customer_initiated']
                            else []::varchar[]
                        end
                    )
                    || (case when is_conflicting_duplicate then ['conflicting_duplicate'] else []::varchar[] end)
            else []::varchar[]
        end as quarantine_reasons
    from validated

),

final as (

    select
        dispositions.resolution_key,
        staged_chats.chat_id,
        dispositions.disposition,
        dispositions.quarantine_reasons[1] as quarantine_reason,
        dispositions.quarantine_reasons,
        staged_chats.category_id,
        staged_chats.is_customer_initiated,
        staged_chats.created_at_utc,
        staged_chats.created_at_local,
        staged_chats.resolved_at_utc,
        staged_chats.resolved_at_local,
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
    from staged_chats
    inner join dispositions
        on
            staged_chats._batch_id = dispositions._batch_id
            and staged_chats._line_number = dispositions._line_number

)

select * from final
