{{
    config(
        materialized=incremental_materialization(),
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
{#- The last microsecond of an hour `utc_hour`. #}
{%- set hour_end = timestamp_from_epoch_us(epoch_us('utc_hour') ~ ' + 3599999999') %}

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
    by row, so the result is exactly ICU's everywhere. The table covers the data window within
    1970-2100 at most: a hostile extract with a chat in year 0001 and one in 9999 would otherwise ask for
    88 million hours; instants outside that span are converted row by row, like a non-uniform hour. #}
utc_window as (

    select
        greatest(date_trunc('hour', min(created_at_utc)), timestamp '1970-01-01 00:00:00') as first_hour,
        least(
            greatest(max(created_at_utc), max(resolved_at_utc)), timestamp '2100-01-01 00:00:00'
        ) as last_instant
    from chat_versions

),

utc_hours as (

    select {{ hour_series('first_hour', 'last_instant') }} as utc_hour
    from utc_window

),

hourly_offsets as (

    select
        utc_hour,
        {{ epoch_us(utc_to_local('utc_hour')) }} - {{ epoch_us('utc_hour') }} as utc_offset_us,
        {{ epoch_us(utc_to_local('utc_hour')) }} - {{ epoch_us('utc_hour') }}
        = {{ epoch_us(utc_to_local(hour_end)) }} - {{ epoch_us(hour_end) }} as is_uniform
    from utc_hours

),

localised as (

    select
        categorised.*,
        case
            when created_offsets.is_uniform
                then {{ timestamp_from_epoch_us(
                    epoch_us('categorised.created_at_utc') ~ ' + created_offsets.utc_offset_us'
                ) }}
            else {{ utc_to_local('categorised.created_at_utc') }}
        end as created_at_local,
        case
            when resolved_offsets.is_uniform
                then {{ timestamp_from_epoch_us(
                    epoch_us('categorised.resolved_at_utc') ~ ' + resolved_offsets.utc_offset_us'
                ) }}
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
        ({{ epoch_us('resolved_at_utc') }} - {{ epoch_us('created_at_utc') }})
        / cast(3600000000 as double) as resolution_hours,
        cast(created_at_local as date) as created_date_local,
        cast(resolved_at_local as date) as resolved_date_local,
        category_id as source_category_id,
        cast({{ seq }} as bigint) as _resolved_seq
    from localised

)

select * from final
