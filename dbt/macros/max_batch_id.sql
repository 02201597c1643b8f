{#
    The newest `_batch_id` already in `relation` (-1 when empty), as a literal for incremental filters.
    A literal lets DuckDB push `_batch_id > N` down to the raw scan (zone maps skip old row groups);
    the same filter written as a scalar subquery makes every run read all of raw.chats.
#}
{% macro max_batch_id(relation) -%}
    {%- if execute -%}
        {%- set result = run_query("select coalesce(max(_batch_id), -1) from " ~ relation) -%}
        {{- return(result.columns[0].values()[0] | int) -}}
    {%- else -%}
        {{- return(-1) -}}
    {%- endif -%}
{%- endmacro %}


{#
    A filter on `_batch_id` keeping only the batches newer than the newest in `staged_table`
    (`schema.table`, looked up when the query runs, without a ref so that tests on a source still run
    before the model that stages it); `true` when no table is named or it does not exist yet.
#}
{% macro unstaged_batch_filter(staged_table) -%}
    {%- if staged_table and execute -%}
        {%- set schema_name, table_name = staged_table.split('.') -%}
        {%- set staged = adapter.get_relation(
            database=target.database, schema=schema_name, identifier=table_name
        ) -%}
        {%- if staged is not none -%}
            {{- return('_batch_id > ' ~ max_batch_id(staged)) -}}
        {%- endif -%}
    {%- endif -%}
    {{- return('true') -}}
{%- endmacro %}
