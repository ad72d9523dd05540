-- sessionkit: the device a session was started from (user agent and
-- client address, as JSON text of bounded size), shown in listings only.
ALTER TABLE sessionkit_sessions ADD COLUMN device TEXT;
