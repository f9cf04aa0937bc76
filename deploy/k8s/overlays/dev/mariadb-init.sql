-- Development only (the dev overlay and deploy/compose.yaml): the two databases, each with a user
-- allowed DDL (migrations) and a user that may only read and write rows (the service). Passwords
-- are the dev ones in kustomization.yaml / compose.yaml: never use them anywhere else.
CREATE DATABASE IF NOT EXISTS vid2mp3_auth CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
CREATE DATABASE IF NOT EXISTS vid2mp3_gateway CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;

CREATE USER IF NOT EXISTS 'auth_migrate'@'%' IDENTIFIED BY 'dev-auth-migrate';
GRANT ALL ON vid2mp3_auth.* TO 'auth_migrate'@'%';
CREATE USER IF NOT EXISTS 'auth'@'%' IDENTIFIED BY 'dev-auth';
GRANT SELECT, INSERT, UPDATE, DELETE ON vid2mp3_auth.* TO 'auth'@'%';

CREATE USER IF NOT EXISTS 'gateway_migrate'@'%' IDENTIFIED BY 'dev-gateway-migrate';
GRANT ALL ON vid2mp3_gateway.* TO 'gateway_migrate'@'%';
CREATE USER IF NOT EXISTS 'gateway'@'%' IDENTIFIED BY 'dev-gateway';
GRANT SELECT, INSERT, UPDATE, DELETE ON vid2mp3_gateway.* TO 'gateway'@'%';
