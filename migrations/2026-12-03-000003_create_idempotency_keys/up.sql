-- A client's key for one post (the `Idempotency-Key` header): a retry with
-- the same key, after an answer that never came, gets the first post back
-- instead of a second one. Keys are the user's own and expire after 24
-- hours; `request` is the post's message and ttl, so that a key sent again
-- with another post is refused rather than answered with the wrong one.
CREATE TABLE idempotency_keys (
    user_uuid     uuid        NOT NULL REFERENCES users (uuid) ON DELETE CASCADE,
    key           text        NOT NULL CONSTRAINT idempotency_keys_key_length CHECK (length(key) BETWEEN 1 AND 255),
    request       text        NOT NULL,
    activity_uuid uuid        NULL REFERENCES activities (uuid) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_uuid, key)
);

-- Every foreign key has an index (user_uuid leads the primary key).
CREATE INDEX idempotency_keys_activity_uuid_idx ON idempotency_keys (activity_uuid);
