-- A user's page reads that user's activities newest first, in keyset pages
-- like the home feed: one index scan that stops after a page. Its leading
-- column also serves the foreign key to users, so the single-column index
-- it replaces would only cost writes.
CREATE INDEX activities_user_page_idx ON activities (user_uuid, created_at DESC, uuid DESC);
DROP INDEX activities_user_uuid_idx;

-- A crud's replies, oldest first, in keyset pages; also the index of the
-- foreign key reply_to_activity_uuid (a cascade looks rows up by `=`, which
-- implies NOT NULL). Partial: most activities reply to nothing, and their
-- NULLs would make most of the index.
CREATE INDEX activities_replies_idx ON activities (reply_to_activity_uuid, created_at, uuid)
    WHERE reply_to_activity_uuid IS NOT NULL;
DROP INDEX activities_reply_to_activity_uuid_idx;
