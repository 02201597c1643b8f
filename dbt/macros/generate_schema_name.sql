{#
    Custom schema names are used verbatim (`staging`, `intermediate`, `analytics`, `quality`) instead of
    dbt's default `<target_schema>_<custom>`: the warehouse has one environment per file.
#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
