CREATE TABLE users (
    uuid            uuid        PRIMARY KEY DEFAULT uuid_generate_v4(),
    display_name    text        NOT NULL,
    -- Unique: "the user with this handle" must name one user.
    handle          text        NOT NULL CONSTRAINT users_handle_key UNIQUE
                                CONSTRAINT users_handle_not_blank CHECK (handle <> ''),
    email           text        NOT NULL,
    -- The identity provider's subject. Not unique: the seed users share 'MOCK'.
    cognito_user_id text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- confirm_user looks users up by their identity-provider subject.
CREATE INDEX users_cognito_user_id_idx ON users (cognito_user_id);
