"""Fixed-count HTTP load for run.sh: COUNT requests of one kind (get: the
home feed, post: a post) over CONNECTIONS keep-alive connections, one
thread each; prints how many were answered 200.

    client.py BASE_URL get|post COUNT CONNECTIONS
"""
import http.client, json, sys, threading
base, kind, count, connections = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
host, port = base.removeprefix("http://").split(":")
body = json.dumps({"message": "posted by the callgrind client", "ttl": "1-day"})
ok = [0] * connections
def run(i):
    conn = http.client.HTTPConnection(host, int(port), timeout=600)
    for _ in range(count // connections):
        if kind == "post":
            conn.request("POST", "/api/activities", body, {"Content-Type": "application/json"})
        else:
            conn.request("GET", "/api/activities/home")
        r = conn.getresponse(); r.read()
        ok[i] += r.status == 200
threads = [threading.Thread(target=run, args=(i,)) for i in range(connections)]
[t.start() for t in threads]; [t.join() for t in threads]
print(sum(ok))
