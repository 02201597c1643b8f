{#-
    The typed chats rows of the batches int_chat_versions_classified has not classified yet (every
    loaded batch on a first or a --full-refresh build): the one place where a build parses raw text.
    The chats data-quality tests (warn on any failing row, error above a share) read its validity
    flags, and the classification reads its typed values, so each raw value is parsed once per build.
    Its tests run before the classification: a batch that breaches an error threshold stops the build
    before anything downstream changes, and the next build checks the same batches again.
    The newest classified batch is looked up when the model runs, without a ref (the classification
    depends on this model, not the other way round).
-#}

with

staged_chats as (

    select
        coalesce(chat_id, '') as resolution_key,
        category_id,
        is_customer_initiated,
        created_at_utc,
        resolved_at_utc,
        {{ quarantine_row_flags() | join(',\n        ') }},
        _batch_id,
        _extract_date,
        _line_number
    from {{ ref('stg_raw__chats') }}
    where {{ unclassified_batch_filter('intermediate.int_chat_versions_classified') }}

),

final as (

    select * from staged_chats

)

select * from final
