{#-
    The books of the chats source, one row: every raw row is accounted for exactly once as a valid chat,
    a quarantined row, a collapsed exact duplicate or a superseded version. Each figure is counted from
    the relation that holds it; the `row_count_reconciliation` test proves the balance.
-#}

with

raw_chats as (

    select count(*) as raw_rows
    from {{ source('raw', 'chats') }}

),

valid_chats as (

    select count(*) as valid_chats
    from {{ ref('fct_chats') }}

),

quarantined_rows as (

    select count(*) as quarantined_rows
    from {{ ref('quarantined_chats') }}

),

dispositions as (

    select
        count(*) filter (where disposition = 'collapsed') as collapsed_duplicates,
        count(*) filter (where disposition = 'superseded') as superseded_versions
    from {{ ref('int_chat_versions_classified') }}

),

final as (

    select
        raw_chats.raw_rows,
        valid_chats.valid_chats,
        quarantined_rows.quarantined_rows,
        dispositions.collapsed_duplicates,
        dispositions.superseded_versions,
        raw_chats.raw_rows
        - valid_chats.valid_chats
        - quarantined_rows.quarantined_rows
        - dispositions.collapsed_duplicates
        - dispositions.superseded_versions as unaccounted_rows
    from raw_chats
    cross join valid_chats
    cross join quarantined_rows
    cross join dispositions

)

select * from final
