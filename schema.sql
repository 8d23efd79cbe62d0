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
    KEY row_story (campaign_table, row_id),
    -- Receipts name the message id the gateway gave us: this finds its row.
    KEY by_message (message_id)
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

-- Every receipt a gateway's webhook brought (sent, delivered, read, failed
-- after acceptance), kept once per message and status however often the
-- gateway retries it. campaign_table and row_id are filled in once the
-- message id is found in delivery_attempts, which may be after the receipt
-- came (a gateway can be faster than our own record of the send).
CREATE TABLE IF NOT EXISTS delivery_receipts (
    id BIGINT PRIMARY KEY AUTO_INCREMENT,
    gateway VARCHAR(16) NOT NULL,
    message_id VARCHAR(128) NOT NULL,
    status ENUM('sent', 'delivered', 'read', 'failed') NOT NULL,
    error_code VARCHAR(32) NULL,
    error_title VARCHAR(255) NULL,
    event_at TIMESTAMP(3) NULL,  -- as the gateway stamped it
    received_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    campaign_table VARCHAR(64) NULL,
    row_id BIGINT UNSIGNED NULL,
    UNIQUE KEY one_event (message_id, status),
    KEY row_receipts (campaign_table, row_id),
    -- Receipts not yet tied to a row, by when they came: the matching looks
    -- at recent ones only, however many for other systems' messages pile up.
    KEY unmatched (row_id, received_at)
);

-- Each sent message's furthest news: sent < delivered < read, and failed is
-- final, whatever order the receipts came in. One row per message id.
CREATE TABLE IF NOT EXISTS message_states (
    message_id VARCHAR(128) PRIMARY KEY,
    status ENUM('sent', 'delivered', 'read', 'failed') NOT NULL,
    error_code VARCHAR(32) NULL,
    error_title VARCHAR(255) NULL,
    delivered_at TIMESTAMP(3) NULL,
    read_at TIMESTAMP(3) NULL,
    failed_at TIMESTAMP(3) NULL,
    updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    campaign_table VARCHAR(64) NULL,  -- filled in when the message id is found in delivery_attempts
    row_id BIGINT UNSIGNED NULL,
    -- Holds the status too, so the status funnel counts a campaign's
    -- messages from the index alone.
    KEY row_state (campaign_table, row_id, status),
    KEY unmatched (row_id, updated_at)
);

-- People who asked not to be messaged (a STOP reply, a "stop promotions"
-- button, or by hand): consumers fail their rows with "opted out", unsent.
CREATE TABLE IF NOT EXISTS opt_outs (
    phone VARCHAR(20) PRIMARY KEY,  -- E.164 digits, as messages are sent
    reason VARCHAR(255) NOT NULL,
    source VARCHAR(16) NOT NULL,  -- meta, waha, gowa, status, api, import
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);
