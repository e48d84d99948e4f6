"""The original Cruddur backend's activity API (week 4, and the final
version's user and crud pages), re-created as the peer of the HTTP benchmark
(examples/bench, phase `http`).

Faithful to how the original served it: Flask, flask-cors, a
psycopg_pool ConnectionPool with the library's defaults, each request reading
its SQL template from disk and printing the SQL to the log, PostgreSQL
building the JSON (query_array_json / query_object_json), psycopg decoding it
and Flask encoding it again. One change for an equal amount of work: the
feed has the same page size as the Rust service (LIMIT, from
BENCH_FEED_LIMIT, default 20), where the original returned every activity.

Run as the original ran (Flask's development server, threaded):
    python -m flask --app examples/bench/python/flask_backend/app.py run --no-debugger --no-reload
or under gunicorn:
    gunicorn --chdir examples/bench/python/flask_backend app:app
with CONNECTION_URL, FRONTEND_URL and BACKEND_URL in the environment.
"""

import os
import re
import sys
from datetime import datetime, timedelta, timezone

from flask import Flask, request
from flask_cors import CORS
from psycopg_pool import ConnectionPool

HERE = os.path.dirname(os.path.abspath(__file__))
# The final version's SQL for a user's page and a crud's page, verbatim
# (tests/original_sql, which tests/original_sql.rs holds to the library).
ORIGINAL_SQL = os.path.join(HERE, "..", "..", "..", "..", "tests", "original_sql")
FEED_LIMIT = int(os.environ.get("BENCH_FEED_LIMIT", "20"))

pool = ConnectionPool(os.environ["CONNECTION_URL"])

app = Flask(__name__)
frontend = os.getenv("FRONTEND_URL")
backend = os.getenv("BACKEND_URL")
origins = [o for o in (frontend, backend) if o]
cors = CORS(
    app,
    resources={r"/api/*": {"origins": origins}},
    headers=["Content-Type", "Authorization"],
    expose_headers="Authorization",
    methods="OPTIONS,GET,HEAD,POST",
)


# --- lib/db.py -------------------------------------------------------------


def template(*args):
    path = os.path.join(HERE, "sql", *args) + ".sql"
    with open(path, "r", encoding="utf-8") as f:
        return f.read()


def original_template(*args):
    path = os.path.join(ORIGINAL_SQL, *args) + ".sql"
    with open(path, "r", encoding="utf-8") as f:
        return f.read()


def print_sql(title, sql, params=None):
    cyan = "\033[96m"
    no_color = "\033[0m"
    print(f"{cyan} SQL STATEMENT-[{title}]------{no_color}")
    print(sql, params)


def query_wrap_object(template):
    return f"""
    (SELECT COALESCE(row_to_json(object_row),'{{}}'::json) FROM (
    {template}
    ) object_row);
    """


def query_wrap_array(template):
    return f"""
    (SELECT COALESCE(array_to_json(array_agg(row_to_json(array_row))),'[]'::json) FROM (
    {template}
    ) array_row);
    """


def query_commit(sql, params):
    print_sql("commit with returning", sql, params)
    pattern = r"\bRETURNING\b"
    is_returning_id = re.search(pattern, sql)
    with pool.connection() as conn:
        cur = conn.cursor()
        cur.execute(sql, params)
        returning_id = cur.fetchone()[0] if is_returning_id else None
        conn.commit()
        return returning_id


def query_array_json(sql, params):
    print_sql("array", sql, params)
    wrapped_sql = query_wrap_array(sql)
    with pool.connection() as conn:
        with conn.cursor() as cur:
            cur.execute(wrapped_sql, params)
            json = cur.fetchone()
            return json[0]


def query_object_json(sql, params):
    print_sql("json", sql, params)
    wrapped_sql = query_wrap_object(sql)
    with pool.connection() as conn:
        with conn.cursor() as cur:
            cur.execute(wrapped_sql, params)
            json = cur.fetchone()
            if json is None:
                return "{}"
            return json[0]


# --- services --------------------------------------------------------------


def home_activities():
    sql = template("activities", "home")
    return query_array_json(sql, {"limit": FEED_LIMIT})


TTLS = {
    "30-days": timedelta(days=30),
    "7-days": timedelta(days=7),
    "3-days": timedelta(days=3),
    "1-day": timedelta(days=1),
    "12-hours": timedelta(hours=12),
    "3-hours": timedelta(hours=3),
    "1-hour": timedelta(hours=1),
}


def create_activity(message, user_handle, ttl):
    model = {"errors": None, "data": None}
    now = datetime.now(timezone.utc).astimezone()
    ttl_offset = TTLS.get(ttl)
    if ttl_offset is None:
        model["errors"] = ["ttl_blank"]
    if user_handle is None or len(user_handle) < 1:
        model["errors"] = ["user_handle_blank"]
    if message is None or len(message) < 1:
        model["errors"] = ["message_blank"]
    elif len(message) > 280:
        model["errors"] = ["message_exceed_max_chars"]
    if model["errors"]:
        model["data"] = {"handle": user_handle, "message": message}
        return model
    expires_at = now + ttl_offset
    sql = template("activities", "create")
    uuid = query_commit(
        sql, {"handle": user_handle, "message": message, "expires_at": expires_at}
    )
    object_sql = template("activities", "object")
    model["data"] = query_object_json(object_sql, {"uuid": uuid})
    return model


def user_activities(handle):
    # services/user_activities.py (week-x): the profile and its newest 40.
    sql = original_template("users", "show")
    return query_object_json(sql, {"handle": handle})


def show_activity(activity_uuid):
    # services/show_activity.py (week-x): the crud and its replies.
    sql = original_template("activities", "show")
    return query_object_json(sql, {"uuid": activity_uuid})


# --- app.py ----------------------------------------------------------------


@app.route("/api/activities/home", methods=["GET"])
def data_home():
    data = home_activities()
    return data, 200


@app.route("/api/activities", methods=["POST", "OPTIONS"])
def data_activities():
    user_handle = "andrewbrown"
    message = request.json["message"]
    ttl = request.json["ttl"]
    model = create_activity(message, user_handle, ttl)
    if model["errors"] is not None:
        return model["errors"], 422
    return model["data"], 200


@app.route("/api/activities/@<string:handle>", methods=["GET"])
def data_handle(handle):
    return user_activities(handle), 200


@app.route("/api/activities/@<string:handle>/status/<string:activity_uuid>", methods=["GET"])
def data_show_activity(handle, activity_uuid):
    return show_activity(activity_uuid), 200


@app.route("/api/health-check")
def health_check():
    return {"success": True, "ver": 1}, 200


if __name__ == "__main__":
    print("run with `python -m flask --app app.py run` or gunicorn", file=sys.stderr)
    sys.exit(2)
