{#-
    One row per chat: the last valid version of each chat id. Rebuilt in full each run (category
    statuses depend on the newest category snapshot, which can change any chat's status).
-#}

with

chat_versions as (

    select
        chat_id,
        category_id,
        is_customer_initiated,
        created_at_utc,
        created_at_local,
        resolved_at_utc,
        resolved_at_local
    from {{ ref('int_chat_versions_classified') }}
    where disposition = 'chat'

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
        cast(resolved_at_local as date) as resolved_date_local
    from categorised

)

select * from final
