{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
        pre_hook=[
            "{% if is_incremental() %}{{ collect_changed_chats(this) }}{% endif %}",
            "{% if is_incremental() %}delete from {{ this }} where chat_id in (select chat_id from temp.main.fct_chats__changed){% endif %}",
        ],
    )
}}

{#-
    One row per chat: the last valid version of each chat id, with its category status and local times.

    Incremental: a build rewrites only the chats that changed since this table last ran (macro
    collect_changed_chats, in a pre-hook, before anything is deleted):
      * every chat id int_chat_versions_classified re-resolved since then (`_resolved_seq` above the
        newest here): new chats, new versions, duplicates, and ids whose rows were re-delivered or
        retracted (an id left with no valid version is deleted and not inserted again);
      * every chat whose category now maps differently (a new categories snapshot that adds, removes,
        disables or moves the chat's category): found from the mapping applied here
        (source_category_id, category_status, root_category_id), so a snapshot that changes nothing
        costs nothing.
    Those chats are deleted, then inserted again from the classification. A --full-refresh (or a first
    build) writes every chat. `_resolved_seq` is the number of the build that wrote the row
    (build_resolution_seq).
-#}

{%- set seq = build_resolution_seq() %}

with

chat_versions as (

    select
        resolution_key as chat_id,
        category_id,
        is_customer_initiated,
        created_at_utc,
        resolved_at_utc
    from {{ ref('int_chat_versions_classified') }}
    where
        disposition = 'chat'
        {% if is_incremental() %}
            and resolution_key in (select fct_chats__changed.chat_id from temp.main.fct_chats__changed)
        {% endif %}

),

category_tree as (

    select
        category_id,
        root_category_id,
        is_disabled_effective
    from {{ ref('int_category_tree') }}

),

categorised as (

    select
        chat_versions.*,
        category_tree.root_category_id,
        case
            when chat_versions.category_id is null then 'none'
            when category_tree.category_id is null then 'unknown'
            when category_tree.is_disabled_effective then 'disabled'
            else 'ok'
        end as category_status
    from chat_versions
    left join category_tree
        on chat_versions.category_id = category_tree.category_id

),

{# Local time through an hourly offset table instead of an ICU conversion per row (about three times
    cheaper at 10 M chats). Every UTC hour of the data window gets the zone's offset at its first and
    last microsecond from ICU; an hour in which the offset changes (never for Melbourne, whose
    transitions fall on whole UTC hours, but possible in zones with half-hour rules) is converted row
    by row, so the result is exactly ICU's everywhere. #}
utc_window as (

    select
        date_trunc('hour', min(created_at_utc)) as first_hour,
        greatest(max(created_at_utc), max(resolved_at_utc)) as last_instant
    from chat_versions

),

utc_hours as (

    select unnest(range(first_hour, last_instant, interval 1 hour)) as utc_hour
    from utc_window

),

hourly_offsets as (

    select
        utc_hour,
        {{ utc_to_local('utc_hour') }} - utc_hour as utc_offset,
        {{ utc_to_local('utc_hour') }} - utc_hour
        = {{ utc_to_local("utc_hour + interval '3599999999 microseconds'") }}
        - (utc_hour + interval '3599999999 microseconds') as is_uniform
    from utc_hours

),

localised as (

    select
        categorised.*,
        case
            when created_offsets.is_uniform then categorised.created_at_utc + created_offsets.utc_offset
            else {{ utc_to_local('categorised.created_at_utc') }}
        end as created_at_local,
        case
            when resolved_offsets.is_uniform then categorised.resolved_at_utc + resolved_offsets.utc_offset
            else {{ utc_to_local('categorised.resolved_at_utc') }}
        end as resolved_at_local
    from categorised
    left join hourly_offsets as created_offsets
        on date_trunc('hour', categorised.created_at_utc) = created_offsets.utc_hour
    left join hourly_offsets as resolved_offsets
        on date_trunc('hour', categorised.resolved_at_utc) = resolved_offsets.utc_hour

),

final as (

    select
        chat_id,
        case when category_status = 'ok' then category_id end as category_id,
        case when category_status = 'ok' then root_category_id end as root_category_id,
        category_status,
        is_customer_initiated,
        created_at_utc,
        created_at_local,
        resolved_at_utc,
        resolved_at_local,
        resolved_at_utc is not null as is_resolved,
        (epoch_us(resolved_at_utc) - epoch_us(created_at_utc)) / 3600000000.0 as resolution_hours,
        cast(created_at_local as date) as created_date_local,
        cast(resolved_at_local as date) as resolved_date_local,
        category_id as source_category_id,
        cast({{ seq }} as bigint) as _resolved_seq
    from localised

)

select * from final
