{#
    Run at the start of every dbt invocation (on-run-start): stop early, with a clear message, when a
    project var has a value the models cannot honour.
#}
{% macro validate_vars() %}
    {%- if var('disabled_scope') not in ['subtree', 'self'] -%}
        {{ exceptions.raise_compiler_error(
            "var('disabled_scope') must be 'subtree' or 'self', got '" ~ var('disabled_scope') ~ "'"
        ) }}
    {%- endif -%}
    {%- for name in [
        'missing_chat_id_error_pct', 'invalid_created_at_error_pct', 'invalid_resolved_at_error_pct',
        'resolved_before_created_error_pct', 'invalid_is_customer_initiated_error_pct'
    ] -%}
        {%- set value = var(name) | float(-1) -%}
        {%- if value < 0 or value > 100 -%}
            {{ exceptions.raise_compiler_error(
                "var('" ~ name ~ "') must be a percentage 0-100, got '" ~ var(name) ~ "'"
            ) }}
        {%- endif -%}
    {%- endfor -%}
    select 1
{% endmacro %}
