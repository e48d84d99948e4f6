-- uuid_generate_v4() is the default of every primary key, as in the original schema.
CREATE EXTENSION IF NOT EXISTS "uuid-ossp";
