{#
    The quarantine reasons that apply to a staged chats row, in the fixed rule order of
    docs/data-contract.md (the first is the row's reason); empty when none applies. Reads the row's
    validity flags from stg_raw__chats; `conflicting` is a SQL boolean for the one rule that needs the
    row's siblings.
#}
{% macro quarantine_reasons(conflicting) -%}
    (case when is_missing_id then ['missing_id'] else []::varchar[] end)
    || (case when is_invalid_created_at then ['invalid_created_at'] else []::varchar[] end)
    || (case when is_invalid_resolved_at then ['invalid_resolved_at'] else []::varchar[] end)
    || (case when is_resolved_before_created then ['resolved_before_created'] else []::varchar[] end)
    || (case when is_invalid_is_customer_initiated then ['invalid_is_customer_initiated'] else []::varchar[] end)
    || (case when {{ conflicting }} then ['conflicting_duplicate'] else []::varchar[] end)
{%- endmacro %}
