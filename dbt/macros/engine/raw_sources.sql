{#
    on-run-start: make the `raw` sources readable. On DuckDB they are the warehouse's raw views, written
    by `chat-analytics ingest`: nothing to do. On Spark they are Hive tables over the Parquet bronze
    layer the CLI exports from the warehouse before a build ($CHAT_ANALYTICS_BRONZE_DIR, default
    <home>/bronze; one file per loaded batch, chat_analytics.pipeline.spark), with the exported columns.
#}
{% macro register_raw_sources() -%}
    {{ return(adapter.dispatch('register_raw_sources', 'chat_analytics')()) }}
{%- endmacro %}

{% macro default__register_raw_sources() -%}
    select 1
{%- endmacro %}

{% macro spark__register_raw_sources() -%}
    {%- set bronze = env_var('CHAT_ANALYTICS_BRONZE_DIR', env_var('CHAT_ANALYTICS_HOME', 'data') ~ '/bronze') -%}
    {#- a Spark string literal: backslashes and quotes of the path escaped -#}
    {%- set bronze = bronze | replace('\\', '\\\\') | replace("'", "\\'") -%}
    {%- set lineage = '_batch_id bigint, _source_file string, _source_sha256 string, _extract_date date, '
        ~ '_line_number bigint, _ingested_at timestamp' -%}
    {%- set tables = {
        'chats': 'id string, chat_category_id string, created_at string, is_customer_initiated string, '
            ~ 'resolved_at string, ' ~ lineage,
        'categories': 'id string, parent_id string, disabled string, ' ~ lineage,
        'ingested_files': 'batch_id bigint, entity string, file_name string, extract_date date, sha256 string, '
            ~ 'file_bytes bigint, version int, status string, reason string, header string, '
            ~ 'extra_columns array<string>, rows_loaded bigint, rows_rejected bigint, blank_lines bigint, '
            ~ 'started_at timestamp, finished_at timestamp',
    } -%}
    {%- if execute -%}
        {%- do run_query('create database if not exists raw') -%}
        {%- for name, columns in tables.items() -%}
            {#- External tables (dropping one leaves its files): declared anew on every build, so the
                location follows the home and the file listing is the current one. -#}
            {%- do run_query('drop table if exists raw.' ~ name) -%}
            {%- do run_query(
                'create table raw.' ~ name ~ ' (' ~ columns ~ ') using parquet '
                ~ "location '" ~ bronze ~ '/' ~ name ~ "'"
            ) -%}
        {%- endfor -%}
    {%- endif -%}
    select 1
{%- endmacro %}
