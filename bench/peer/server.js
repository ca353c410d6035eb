// The peer of #17: how open-source 积分超市 apps serve a ranking, a household's history and a
// redemption: Express and a mysql2 pool, no authentication or authorisation at all.
// bench/peer.py starts it: node server.js PORT SOCKET DATABASE
const express = require("express");
const mysql = require("mysql2/promise");

const [port, socketPath, database] = process.argv.slice(2);
const pool = mysql.createPool({
  socketPath, user: "root", database, connectionLimit: 10, dateStrings: true,
});
const app = express();
app.use(express.json());

// The floor of this stack, as bench/ceiling.py is ours: one query on the pool, nothing else.
app.get("/select1", async (req, res, next) => {
  try {
    const [rows] = await pool.query("SELECT 1 AS one");
    res.json({ one: rows[0].one });
  } catch (e) { next(e); }
});

app.get("/villages/:id/ranking", async (req, res, next) => {
  try {
    const [rows] = await pool.query(
      "SELECT id, number, head_name, points FROM household WHERE village_id = ?" +
        " ORDER BY points DESC, number LIMIT 50",
      [req.params.id],
    );
    res.json(rows);
  } catch (e) { next(e); }
});

app.get("/households/:id/history", async (req, res, next) => {
  try {
    const [rows] = await pool.query(
      "SELECT id, kind, points, memo, created_at FROM points_log WHERE household_id = ?" +
        " ORDER BY id DESC LIMIT 50",
      [req.params.id],
    );
    res.json(rows);
  } catch (e) { next(e); }
});

app.post("/redemptions", async (req, res, next) => {
  const { household_id: householdId, item_id: itemId, quantity } = req.body;
  const conn = await pool.getConnection();
  try {
    await conn.beginTransaction();
    const [[household]] = await conn.query(
      "SELECT points FROM household WHERE id = ? FOR UPDATE", [householdId]);
    const [[item]] = await conn.query(
      "SELECT price, stock FROM item WHERE id = ? FOR UPDATE", [itemId]);
    if (!household || !item) {
      await conn.rollback();
      return res.status(404).json({ error: "not found" });
    }
    const cost = item.price * quantity;
    if (household.points < cost || item.stock < quantity) {
      await conn.rollback();
      return res.status(409).json({ error: "not enough points or stock" });
    }
    await conn.query("UPDATE household SET points = points - ? WHERE id = ?", [cost, householdId]);
    await conn.query("UPDATE item SET stock = stock - ? WHERE id = ?", [quantity, itemId]);
    const [order] = await conn.query(
      "INSERT INTO orders (household_id, item_id, quantity, points) VALUES (?, ?, ?, ?)",
      [householdId, itemId, quantity, cost]);
    await conn.query(
      "INSERT INTO points_log (household_id, kind, points, memo) VALUES (?, 'redemption', ?, ?)",
      [householdId, -cost, "积分兑换"]);
    await conn.commit();
    res.status(201).json({ order_id: order.insertId, points: cost });
  } catch (e) {
    await conn.rollback().catch(() => {});
    next(e);
  } finally {
    conn.release();
  }
});

app.listen(Number(port), "127.0.0.1");
