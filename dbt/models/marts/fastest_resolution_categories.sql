{{ config(materialized=top_ten_materialization()) }}

{{ top_ten_categories('rank_fastest_resolution') }}
