{{ config(materialized=top_ten_materialization()) }}

{{ top_ten_categories('rank_customer_chats') }}
