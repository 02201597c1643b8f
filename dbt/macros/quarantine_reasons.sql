{#
    The quarantine reasons live in ONE place, var('quarantine_reasons') in dbt_project.yml, in their
    order of precedence (docs/data-contract.md); Python reads the same list
    (chat_analytics.dbt_vars.quarantine_reasons). Every reason but `conflicting_duplicate` is a row's
    own validity flag `is_<reason>`, computed in stg_raw__chats.
#}

{# The row-level validity flags, `is_<reason>`, in rule order. #}
{% macro quarantine_row_flags() -%}
    {%- set flags = [] -%}
    {%- for reason in var('quarantine_reasons') if reason != 'conflicting_duplicate' -%}
        {%- do flags.append('is_' ~ reason) -%}
    {%- endfor -%}
    {{ return(flags) }}
{%- endmacro %}

{#
    The quarantine reasons that apply to a chats row, in rule order (the first is the row's reason);
    empty when none applies. Reads the row's validity flags; `conflicting` is a SQL boolean for the one
    rule that needs the row's siblings.
#}
{% macro quarantine_reasons(conflicting) -%}
    {%- set terms = [] -%}
    {%- for reason in var('quarantine_reasons') -%}
        {%- set applies = conflicting if reason == 'conflicting_duplicate' else 'is_' ~ reason -%}
        {%- do terms.append(
            "(case when " ~ applies ~ " then " ~ text_array("'" ~ reason ~ "'") ~ " else " ~ empty_text_array() ~ " end)"
        ) -%}
    {%- endfor -%}
    {{ concat_arrays(terms) }}
{%- endmacro %}
