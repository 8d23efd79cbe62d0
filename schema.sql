-- The campaign table: one row per message. Existing tables with just these
-- three columns work unchanged: the project never adds columns to them.
--   column1: the phone number
--   column3: 1 = pending, 0 = sent, 2 = failed permanently (reason below)
CREATE TABLE IF NOT EXISTS campaign_master_1 (
    id INT PRIMARY KEY AUTO_INCREMENT,
    column1 VARCHAR(20),
    column3 TINYINT DEFAULT 1,
    -- Producers ask for pending rows in id order: this index keeps that
    -- query cheap however many rows are already processed.
    KEY pending_rows (column3, id)
);

-- Why a row was marked failed (column3 = 2). Kept apart from the campaign
-- table so a user's table never needs altering.
CREATE TABLE IF NOT EXISTS campaign_failures (
    campaign_table VARCHAR(64) NOT NULL,
    row_id BIGINT UNSIGNED NOT NULL,  -- any campaign table's id
    attempts INT NOT NULL,
    http_status SMALLINT NULL,
    reason VARCHAR(255) NOT NULL,
    failed_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (campaign_table, row_id)
);

-- POST /api/messages requests that carried an Idempotency-Key, written in
-- the same transaction as their rows: a client that retries a request (a
-- timeout, a lost answer) gets the first request's ids back and adds no row
-- twice. Old entries may be deleted at will, e.g. after a week:
--   DELETE FROM ingest_requests WHERE created_at < NOW() - INTERVAL 7 DAY
CREATE TABLE IF NOT EXISTS ingest_requests (
    campaign_table VARCHAR(64) NOT NULL,
    idempotency_key VARCHAR(255) NOT NULL,
    body_sha256 CHAR(64) NOT NULL,
    ids MEDIUMTEXT NOT NULL,  -- JSON list of the row ids the request added
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (campaign_table, idempotency_key)
);

-- Every send attempt, written in batches by the consumers. A row's story:
--   SELECT * FROM delivery_attempts
--   WHERE campaign_table = 'campaign_master_1' AND row_id = 42 ORDER BY id
CREATE TABLE IF NOT EXISTS delivery_attempts (
    id BIGINT PRIMARY KEY AUTO_INCREMENT,
    campaign_table VARCHAR(64) NOT NULL,
    row_id BIGINT UNSIGNED NOT NULL,
    attempt INT NOT NULL,
    outcome ENUM('sent', 'retry', 'failed') NOT NULL,
    http_status SMALLINT NULL,
    message_id VARCHAR(128) NULL,
    sender VARCHAR(128) NULL,  -- which sender (number, session, endpoint) the attempt went through
    error VARCHAR(255) NULL,
    latency_ms INT NULL,
    created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    KEY row_story (campaign_table, row_id)
);

-- A row's send generation: outcomes (sent or failed) recorded for it, raised in
-- the transaction that records each one. The idempotency key of a send is
-- <table>:<row id> for generation 0 and <table>:<row id>:<generation> after, so
-- a row set back to pending on purpose is a new message to the gateway, while
-- retries of one send keep their key. Consumers create it if it is missing.
CREATE TABLE IF NOT EXISTS send_generations (
    campaign_table VARCHAR(64) NOT NULL,
    row_id BIGINT UNSIGNED NOT NULL,
    generation INT UNSIGNED NOT NULL,
    PRIMARY KEY (campaign_table, row_id)
);
