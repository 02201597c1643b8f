{{
    config(
        materialized=incremental_materialization(),
        incremental_strategy='delete+insert',
        unique_key='resolution_key',
        on_schema_change='fail',
    )
}}

-- depends_on: {{ source('raw', 'ingested_files') }}

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

    A batch stops being loaded when its file is re-delivered (`replaced`) or withdrawn (`retracted`,
    `chat-analytics retract`); its rows leave raw.chats but are still here. Every key with a row of such
    a batch is touched too: re-resolved from its remaining rows, and the rows of the withdrawn batch stay
    as `withdrawn` (kept for audit, and so that a key left with no loaded row at all is still seen as
    changed downstream).

    `_resolved_seq` numbers the builds that changed this table: every row written by a build carries
    its number (one more than the newest before, also across a --full-refresh), so fct_chats applies
    exactly the keys changed since it last ran, and the tests check what this build wrote.

    Performance (README, performance section):
      * staging is a view, parsed once per run and only for what is new: on an incremental run the
        history of the touched keys comes back from this table (typed values and validity flags are
        functions of the raw row alone), never from re-parsing all of raw;
      * a key with a single row needs no rule but validity, so only the keys with several rows (about
        one in six at 10 M chats) go through the three window passes, with the source text they need
        for the exact-duplicate rule fetched for those rows alone;
      * the table keeps typed values and flags, not the raw text: writing a wide copy of every raw row
        cost more than all the rules. quarantined_chats fetches the text of its few rows from staging.
-#}

{%- set staged_key = "coalesce(chat_id, '')" %}
{%- set seq = build_resolution_seq() %}
{%- set flags = quarantine_row_flags() %}
{%- set staged_columns = ['category_id', 'is_customer_initiated', 'created_at_utc', 'resolved_at_utc']
    + flags + ['_batch_id', '_extract_date', '_line_number'] %}

with

{# Typed and validated once per build, for the batches not classified yet (int_chat_rows_pending). #}
new_rows as (

    select
        resolution_key,
        {{ staged_columns | join(',\n        ') }}
    from {{ ref('int_chat_rows_pending') }}

),

{% if is_incremental() %}

    loaded_batches as (

        select batch_id
        from {{ source('raw', 'ingested_files') }}
        where status = 'loaded'

    ),

    {# Rows of a batch that is no longer loaded (its file was replaced or retracted) not marked yet. #}
    newly_withdrawn_rows as (

        select resolution_key
        from {{ this }}
        where
            disposition != 'withdrawn'
            and _batch_id not in (select loaded_batches.batch_id from loaded_batches)

    ),

    withdrawn_keys as (

        select distinct resolution_key
        from newly_withdrawn_rows

    ),

    touched_keys as (

        select resolution_key
        from new_rows
        union
        select resolution_key
        from withdrawn_keys

    ),

    {# The history of the touched keys, as resolved before: typed values and flags are a function of
        the raw row alone, so they are read back from this table instead of re-parsing all of raw. #}
    resolved_rows as (

        select
            resolution_key,
            {{ staged_columns | join(',\n            ') }}
        from {{ this }}
        where
            resolution_key in (select touched_keys.resolution_key from touched_keys)
            and _batch_id in (select loaded_batches.batch_id from loaded_batches)

    ),

    {# The rows of the touched keys whose batch is no longer loaded: kept, as `withdrawn`. #}
    withdrawn_rows as (

        select
            resolution_key,
            'withdrawn' as disposition,
            is_conflicting_duplicate,
            {{ staged_columns | join(',\n            ') }}
        from {{ this }}
        where
            resolution_key in (select touched_keys.resolution_key from touched_keys)
            and _batch_id not in (select loaded_batches.batch_id from loaded_batches)

    ),

    staged_rows as (

        select * from new_rows
        union all
        select * from resolved_rows

    ),

{% else %}

    staged_rows as (

        select * from new_rows

    ),

{% endif %}

multi_row_keys as (

    select resolution_key
    from staged_rows
    group by resolution_key
    having count(*) > 1

),

keyed_rows as (

    select
        staged_rows.*,
        multi_row_keys.resolution_key is not null as has_several_rows
    from staged_rows
    left join multi_row_keys
        on staged_rows.resolution_key = multi_row_keys.resolution_key

),

single_rows as (

    select
        resolution_key,
        case
            when {{ flags | join(' or ') }} then 'quarantined'
            else 'chat'
        end as disposition,
        false as is_conflicting_duplicate,
        category_id,
        is_customer_initiated,
        created_at_utc,
        resolved_at_utc,
        {{ flags | join(',\n        ') }},
        _batch_id,
        _extract_date,
        _line_number
    from keyed_rows
    where not has_several_rows

),

{# The source text of the rows of keys with several rows, for the exact-duplicate rule (only the id is
    parsed to find them: no timestamp parsing). #}
raw_texts as (

    select
        raw_id,
        raw_chat_category_id,
        raw_created_at,
        raw_is_customer_initiated,
        raw_resolved_at,
        _batch_id,
        _line_number
    from {{ ref('stg_raw__chats') }}
    where {{ staged_key }} in (select multi_row_keys.resolution_key from multi_row_keys)

),

version_rows as (

    select
        keyed_rows.*,
        raw_texts.raw_id,
        raw_texts.raw_chat_category_id,
        raw_texts.raw_created_at,
        raw_texts.raw_is_customer_initiated,
        raw_texts.raw_resolved_at
    from keyed_rows
    inner join raw_texts
        on
            keyed_rows._batch_id = raw_texts._batch_id
            and keyed_rows._line_number = raw_texts._line_number
    where keyed_rows.has_several_rows

),

{# Rule 1 as an aggregate: the first version of each distinct source row (a hash aggregate on the
    five texts is several times cheaper than a window partitioned by them). #}
first_versions as (

    select min({{ struct_of(['_extract_date', '_batch_id', '_line_number']) }}) as first_version
    from version_rows
    group by raw_id, raw_chat_category_id, raw_created_at, raw_is_customer_initiated, raw_resolved_at

),

exact_duplicates as (

    select
        version_rows.*,
        first_versions.first_version is null as is_collapsed_duplicate
    from version_rows
    left join first_versions
        on
            {{ struct_of(['version_rows._extract_date', 'version_rows._batch_id', 'version_rows._line_number']) }}
            = first_versions.first_version

),

conflicting_duplicates as (

    select
        *,
        not is_collapsed_duplicate
        and not is_missing_id
        and sum(case when is_collapsed_duplicate then 0 else 1 end) over (partition by resolution_key, _batch_id) > 1
            as is_conflicting_duplicate
    from exact_duplicates

),

validated as (

    select
        *,
        not is_collapsed_duplicate
        and ({{ flags | join(' or ') }} or is_conflicting_duplicate) as is_quarantined
    from conflicting_duplicates

),

multi_rows as (

    select
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
        is_conflicting_duplicate,
        {{ staged_columns | join(',\n        ') }}
    from validated

),

all_rows as (

    select * from single_rows
    union all
    select * from multi_rows
    {% if is_incremental() %}
        union all
        select * from withdrawn_rows
    {% endif %}

),

final as (

    select
        resolution_key,
        disposition,
        category_id,
        is_customer_initiated,
        created_at_utc,
        resolved_at_utc,
        {{ flags | join(',\n        ') }},
        is_conflicting_duplicate,
        _batch_id,
        _extract_date,
        _line_number,
        cast({{ seq }} as bigint) as _resolved_seq
    from all_rows

)

select * from final
