-- The profile's text (the original added it as a nullable column). Not null,
-- empty by default: "no bio" has one spelling, and the original's update
-- wrote '' for a missing bio anyway. The library holds its length (see
-- MAX_BIO_CHARS); the column does not, so the limit can change without a
-- migration.
ALTER TABLE users ADD COLUMN bio text NOT NULL DEFAULT '';
