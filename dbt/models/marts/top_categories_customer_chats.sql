{{ config(materialized='view') }}

{{ top_ten_categories('rank_customer_chats') }}
