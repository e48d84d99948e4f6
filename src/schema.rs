// @generated automatically by Diesel CLI.

diesel::table! {
    activities (uuid) {
        uuid -> Uuid,
        user_uuid -> Uuid,
        message -> Text,
        replies_count -> Int4,
        reposts_count -> Int4,
        likes_count -> Int4,
        reply_to_activity_uuid -> Nullable<Uuid>,
        expires_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    idempotency_keys (user_uuid, key) {
        user_uuid -> Uuid,
        key -> Text,
        request -> Text,
        activity_uuid -> Nullable<Uuid>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    users (uuid) {
        uuid -> Uuid,
        display_name -> Text,
        handle -> Text,
        email -> Text,
        cognito_user_id -> Text,
        created_at -> Timestamptz,
        bio -> Text,
    }
}

diesel::joinable!(activities -> users (user_uuid));
diesel::joinable!(idempotency_keys -> activities (activity_uuid));
diesel::joinable!(idempotency_keys -> users (user_uuid));

diesel::allow_tables_to_appear_in_same_query!(activities, idempotency_keys, users,);
