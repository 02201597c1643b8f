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


{#
    The batches `classified_table` (`schema.table`) has not classified yet: all of them on a
    --full-refresh build and on an engine without incremental models (the table is rebuilt from every
    loaded batch), otherwise unstaged_batch_filter.
#}
{% macro unclassified_batch_filter(classified_table) -%}
    {%- if flags.FULL_REFRESH or not incremental_models() -%}
        {{- return('true') -}}
    {%- endif -%}
    {{- return(unstaged_batch_filter(classified_table)) -}}
{%- endmacro %}


{#
    The number this build writes into `_resolved_seq` of int_chat_versions_classified and fct_chats: one
    more than the newest in either (1 when neither exists). Read from the existing tables also on a
    --full-refresh, so the numbers keep increasing, each build's rows carry their own number, and
    fct_chats can tell which chats the classification re-resolved since it last ran.
#}
{% macro build_resolution_seq() -%}
    {%- if not execute -%}
        {{- return(1) -}}
    {%- endif -%}
    {%- set newest = [] -%}
    {%- set tables = [('intermediate', 'int_chat_versions_classified'), ('analytics', 'fct_chats')] -%}
    {%- for schema_name, table_name in tables -%}
        {%- set existing = adapter.get_relation(
            database=target.database, schema=schema_name, identifier=table_name
        ) -%}
        {%- if existing is not none -%}
            {%- set columns = adapter.get_columns_in_relation(existing) | map(attribute='name') | list -%}
            {%- if '_resolved_seq' in columns -%}
                {%- set result = run_query("select coalesce(max(_resolved_seq), 0) from " ~ existing) -%}
                {%- do newest.append(result.columns[0].values()[0] | int) -%}
            {%- endif -%}
        {%- endif -%}
    {%- endfor -%}
    {{- return((newest | max if newest else 0) + 1) -}}
{%- endmacro %}


{#
    Incremental tables of an earlier version of this project that lack a column the current models
    need are dropped before the build (an on-run-start hook), so that they are rebuilt in full once
    instead of failing on a schema change. `outdated` lists (schema, table, required column).
#}
{% macro drop_outdated_incremental_models() -%}
    {%- set outdated = [
        ('intermediate', 'int_chat_versions_classified', '_resolved_seq'),
        ('analytics', 'fct_chats', '_resolved_seq'),
        ('analytics', 'fct_chats', 'source_category_id'),
    ] -%}
    {%- if execute -%}
        {%- for schema_name, table_name, column_name in outdated -%}
            {%- set existing = adapter.get_relation(
                database=target.database, schema=schema_name, identifier=table_name
            ) -%}
            {%- if existing is not none -%}
                {%- set columns = adapter.get_columns_in_relation(existing) | map(attribute='name') | list -%}
                {%- if column_name not in columns -%}
                    {{ log(
                        'dropping ' ~ existing ~ ' (from an earlier version, no ' ~ column_name
                        ~ '): rebuilt in full', info=true
                    ) }}
                    {%- do adapter.drop_relation(existing) -%}
                {%- endif -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    select 1
{%- endmacro %}


{# The newest `_resolved_seq` of `relation` (0 when empty or not built yet), as a literal. #}
{% macro current_resolution_seq(relation) -%}
    {%- if not execute -%}
        {{- return(0) -}}
    {%- endif -%}
    {%- set existing = adapter.get_relation(
        database=relation.database, schema=relation.schema, identifier=relation.identifier
    ) -%}
    {%- if existing is none -%}
        {{- return(0) -}}
    {%- endif -%}
    {%- set result = run_query("select coalesce(max(_resolved_seq), 0) from " ~ existing) -%}
    {{- return(result.columns[0].values()[0] | int) -}}
{%- endmacro %}


{#
    fct_chats' pre-hook: the ids of the chats to rewrite, into the temporary table
    temp.main.fct_chats__changed (see fct_chats). Computed before anything is deleted.
#}
{% macro collect_changed_chats(fct) -%}
    {%- set applied_seq = current_resolution_seq(fct) -%}
    create or replace temp table fct_chats__changed as

    with

    reclassified as (

        select distinct resolution_key as chat_id
        from {{ ref('int_chat_versions_classified') }}
        where _resolved_seq > {{ applied_seq }}

    ),

    applied_mapping as (

        select
            source_category_id,
            category_status,
            root_category_id
        from {{ fct }}
        where source_category_id is not null
        group by all

    ),

    current_mapping as (

        select
            category_id,
            case when is_disabled_effective then 'disabled' else 'ok' end as category_status,
            case when not is_disabled_effective then root_category_id end as root_category_id
        from {{ ref('int_category_tree') }}

    ),

    remapped_categories as (

        select applied_mapping.source_category_id
        from applied_mapping
        left join current_mapping
            on applied_mapping.source_category_id = current_mapping.category_id
        where
            applied_mapping.category_status is distinct from coalesce(current_mapping.category_status, 'unknown')
            or applied_mapping.root_category_id is distinct from current_mapping.root_category_id

    ),

    remapped as (

        select chat_id
        from {{ fct }}
        where source_category_id in (select remapped_categories.source_category_id from remapped_categories)

    )

    select chat_id from reclassified
    union
    select chat_id from remapped
{%- endmacro %}
