CREATE INDEX activities_reply_to_activity_uuid_idx ON activities (reply_to_activity_uuid);
DROP INDEX activities_replies_idx;
CREATE INDEX activities_user_uuid_idx ON activities (user_uuid);
DROP INDEX activities_user_page_idx;
