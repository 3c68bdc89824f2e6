-- What an admin let a user do beyond their role (PermissionGranted / PermissionRevoked).
ALTER TABLE users ADD COLUMN permissions TEXT[] NOT NULL DEFAULT '{}';
