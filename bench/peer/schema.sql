CREATE TABLE household (
  id CHAR(36) PRIMARY KEY,
  village_id CHAR(36) NOT NULL,
  number VARCHAR(20) NOT NULL,
  head_name VARCHAR(50) NOT NULL,
  points INT NOT NULL,
  KEY ix_household_village_points (village_id, points)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE item (
  id CHAR(36) PRIMARY KEY,
  name VARCHAR(50) NOT NULL,
  price INT NOT NULL,
  stock INT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE orders (
  id BIGINT AUTO_INCREMENT PRIMARY KEY,
  household_id CHAR(36) NOT NULL,
  item_id CHAR(36) NOT NULL,
  quantity INT NOT NULL,
  points INT NOT NULL,
  created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  KEY ix_orders_household (household_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE points_log (
  id BIGINT AUTO_INCREMENT PRIMARY KEY,
  household_id CHAR(36) NOT NULL,
  kind VARCHAR(20) NOT NULL,
  points INT NOT NULL,
  memo VARCHAR(200),
  created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  KEY ix_points_log_household (household_id, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
