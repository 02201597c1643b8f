{{ config(materialized=top_ten_materialization()) }}

{{ top_ten_categories('rank_lowest_resolution_rate') }}
