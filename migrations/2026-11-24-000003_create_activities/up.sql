CREATE TABLE activities (
    uuid                   uuid        PRIMARY KEY DEFAULT uuid_generate_v4(),
    user_uuid              uuid        NOT NULL REFERENCES users (uuid) ON DELETE CASCADE,
    message                text        NOT NULL CONSTRAINT activities_message_not_empty CHECK (message <> ''),
    replies_count          integer     NOT NULL DEFAULT 0 CONSTRAINT activities_replies_count_non_negative CHECK (replies_count >= 0),
    reposts_count          integer     NOT NULL DEFAULT 0 CONSTRAINT activities_reposts_count_non_negative CHECK (reposts_count >= 0),
    likes_count            integer     NOT NULL DEFAULT 0 CONSTRAINT activities_likes_count_non_negative CHECK (likes_count >= 0),
    reply_to_activity_uuid uuid        NULL REFERENCES activities (uuid) ON DELETE CASCADE,
    expires_at             timestamptz NULL,
    created_at             timestamptz NOT NULL DEFAULT now()
);

-- The home feed reads newest first with uuid as the tie-breaker; this index
-- turns that into an index scan that stops after one page (keyset paging).
CREATE INDEX activities_feed_idx ON activities (created_at DESC, uuid DESC);
-- Every foreign key has an index, so cascades and joins from the parent side
-- do not scan the table.
CREATE INDEX activities_user_uuid_idx ON activities (user_uuid);
CREATE INDEX activities_reply_to_activity_uuid_idx ON activities (reply_to_activity_uuid);
