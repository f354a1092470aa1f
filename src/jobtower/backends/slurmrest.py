"""slurmrestd, Slurm's REST API, reached with a JWT: for web servers that are not on a login node.

A :class:`~jobtower.models.SlurmCluster` with a `rest_url` and a `token` is reached through this client
instead of the Slurm commands. It speaks the OpenAPI plugins ``v0.0.38`` and ``dbv0.0.38`` of Slurm 22.05
(slurmrestd ``-s openapi/v0.0.38,openapi/dbv0.0.38``), and sends each request with the headers
X-SLURM-USER-NAME (the token's user, its ``sun`` claim) and X-SLURM-USER-TOKEN. The token never appears in
a message, a log line or a repr(), and never travels in clear: a `rest_url` of plain ``http://`` is refused
unless it is on this machine's loopback (:func:`rest_url_problem`).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import ipaddress
import json
import logging
import shlex
import urllib.error
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobtower.models import SlurmCluster

log = logging.getLogger("jobtower.slurm")

#: The OpenAPI version of slurmrestd this client speaks (Slurm 22.05: v0.0.36 to v0.0.38).
REST_API = "v0.0.38"
#: Seconds a slurmrestd request may take before the cluster counts as not answering.
REQUEST_TIMEOUT = 30.0
#: sbatch's long option names -> the job fields of slurmrestd v0.0.38 (the same option, another name).
SBATCH_TO_REST = {
    "account": "account", "acctg-freq": "account_gather_frequency", "batch": "batch_features",
    "begin": "begin_time", "constraint": "constraints", "core-spec": "core_specification",
    "cores-per-socket": "cores_per_socket", "cpu-freq": "cpu_frequency", "cpus-per-gpu": "cpus_per_gpu",
    "cpus-per-task": "cpus_per_task", "deadline": "deadline", "delay-boot": "delay_boot",
    "dependency": "dependency", "distribution": "distribution", "exclude": "exclude_nodes",
    "exclusive": "exclusive", "gpu-bind": "gpu_binding", "gpu-freq": "gpu_frequency", "gpus": "gpus",
    "gpus-per-node": "gpus_per_node", "gpus-per-socket": "gpus_per_socket", "gpus-per-task": "gpus_per_task",
    "gres": "gres", "gres-flags": "gres_flags", "hint": "cpu_binding_hint", "job-name": "name",
    "licenses": "licenses", "mail-type": "mail_type", "mail-user": "mail_user", "mcs-label": "mcs_label",
    "mem": "memory_per_node", "mem-bind": "memory_binding", "mem-per-cpu": "memory_per_cpu",
    "mem-per-gpu": "memory_per_gpu", "mincpus": "minimum_cpus_per_node", "nice": "nice",
    "no-requeue": "no_requeue", "nodelist": "nodelist", "nodes": "nodes", "ntasks": "tasks",
    "ntasks-per-core": "ntasks_per_core", "ntasks-per-gpu": "ntasks_per_gpu", "ntasks-per-node": "ntasks_per_node",
    "ntasks-per-socket": "ntasks_per_socket", "partition": "partition", "priority": "priority",
    "profile": "profile", "qos": "qos", "requeue": "requeue", "reservation": "reservation", "signal": "signal",
    "sockets-per-node": "sockets_per_node", "spread-job": "spread_job", "thread-spec": "thread_specification",
    "threads-per-core": "threads_per_core", "time": "time_limit", "time-min": "time_minimum",
    "tmp": "temporary_disk_per_node", "use-min-nodes": "minimum_nodes", "wckey": "wckey",
}
#: sbatch options slurmrestd v0.0.38 refuses ("Disabled key") or does not know: CLI clusters only.
REST_UNSUPPORTED = frozenset({
    "clusters", "container", "contiguous", "extra-node-info", "network", "nodefile", "overcommit",
    "oversubscribe", "power", "reboot", "switches",
})
#: What a flag option (True) is sent as, where slurmrestd wants a word instead of true.
REST_FLAG_VALUES = {"exclusive": "exclusive"}
#: Slurm error numbers slurmrestd answers when slurmctld or slurmdbd refused the JWT (-1: Unspecified,
#: 1007: Protocol authentication error, 5005: Zero Bytes were transmitted: the controller hung up on it).
AUTH_ERRORS = frozenset({-1, 1007, 5005})
#: The script of a command job: its argv, each word quoted for /bin/sh, run with exec (slurmrestd 22.05
#: crashes on the job field `argv`, so the words cannot go as the script's arguments as sbatch's do).
COMMAND_SCRIPT = (
    "#!/bin/sh\n# written by jobtower: runs the job's command as given (argv), each word quoted: no shell "
    "parsing\nexec {argv}\n"
)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Follow no redirect: urllib would send the token's header on to wherever it points."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


#: The opener of every request: no redirects (the answer is an HTTP error instead).
_OPENER = urllib.request.build_opener(_NoRedirects)


class SlurmRestError(RuntimeError):
    """slurmrestd answered with errors; the message says what it said, and how to fix it where known."""


class SlurmRestUnavailable(SlurmRestError):
    """slurmrestd did not answer (not running, wrong URL, network)."""


def is_loopback_host(host: str) -> bool:
    """Return True for a host name or address on this machine's loopback (localhost, 127.0.0.0/8, ::1)."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True  # RFC 6761: localhost names resolve to loopback only
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False  # any other name may resolve anywhere: its traffic may leave the machine
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is 127.0.0.1
    return bool((mapped or address).is_loopback)


def rest_url_problem(cluster: str, url: str) -> str:
    """Return why a cluster's rest_url may not carry its JWT ("" when it may): http only on loopback.

    The token goes in a header of every request: over plain http to another machine, anyone on the path
    reads it and can submit jobs as its user until it expires.
    """
    if not url:
        return ""
    parts = urllib.parse.urlsplit(url.strip())
    scheme = parts.scheme.lower()
    try:
        host = parts.hostname or ""
    except ValueError:
        host = ""
    if scheme not in ("http", "https") or not host:
        return (
            f"Slurm cluster {cluster!r}: rest_url {url!r} is not an http(s) URL with a host; give slurmrestd's "
            "URL, such as https://slurm.example.org:6820"
        )
    if scheme == "http" and not is_loopback_host(host):
        return (
            f"Slurm cluster {cluster!r}: rest_url {url!r} is plain http:// to {host}, which is not this "
            "machine's loopback, so the cluster's JWT would travel in clear: use https:// (slurmrestd behind "
            "TLS), or http:// only to a loopback address (127.0.0.1, ::1, localhost) such as an SSH tunnel's "
            "end on this machine"
        )
    return ""


def token_claims(token: str) -> dict[str, Any]:
    """Return the claims of a JWT (its middle part), unverified: the controller verifies it."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise ValueError("it is not a JWT (three dot-separated parts)")
    body = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(body))
    except (ValueError, binascii.Error) as exc:
        raise ValueError(f"its claims do not decode ({type(exc).__name__})") from None
    if not isinstance(claims, dict):
        raise ValueError("its claims are not a JSON object")
    return claims


def command_script(argv: list[str]) -> str:
    """Return the batch script that runs argv as given (each word quoted, exec'd: no shell parsing)."""
    return COMMAND_SCRIPT.format(argv=" ".join(shlex.quote(word) for word in argv))


def rest_job_fields(options: dict[str, Any]) -> dict[str, Any]:
    """Return the slurmrestd job fields of a job's sbatch options; ValueError for one it cannot send."""
    fields: dict[str, Any] = {}
    for name, value in sorted(options.items()):
        if name not in SBATCH_TO_REST:
            raise ValueError(
                f"the sbatch option {name!r} cannot go through slurmrestd {REST_API} (Slurm's REST API "
                "refuses it): leave it out, or give the cluster a slurm_conf and no rest_url to submit "
                "with sbatch"
            )
        fields[SBATCH_TO_REST[name]] = REST_FLAG_VALUES.get(name, True) if value is True else str(value)
    return fields


#: sbatch's one-letter options -> their long names, for #SBATCH lines.
SHORT_OPTIONS = {
    "A": "account", "a": "array", "b": "begin", "C": "constraint", "c": "cpus-per-task", "D": "chdir",
    "d": "dependency", "e": "error", "G": "gpus", "H": "hold", "i": "input", "J": "job-name", "L": "licenses",
    "M": "clusters", "m": "distribution", "N": "nodes", "n": "ntasks", "o": "output", "p": "partition",
    "q": "qos", "S": "core-spec", "s": "oversubscribe", "t": "time", "W": "wait", "w": "nodelist", "x": "exclude",
}
#: Options that take no value (a #SBATCH line gives them alone).
FLAG_OPTIONS = frozenset({
    "contiguous", "exclusive", "no-requeue", "overcommit", "oversubscribe", "requeue", "spread-job",
    "use-min-nodes", "reboot", "hold", "wait", "test-only", "parsable", "get-user-env",
})
#: #SBATCH options jobtower sets itself on the REST path too: its own value wins, as on sbatch's command line.
SET_BY_JOBTOWER = frozenset({"output", "error", "chdir", "comment", "job-name", "export", "parsable"})


def script_options(script: str) -> dict[str, Any]:
    """Return the options of a batch script's #SBATCH lines by their long names, as sbatch reads them.

    sbatch reads #SBATCH lines up to the first line of the script that is neither blank nor a comment;
    slurmrestd reads none, so the REST path sends them as job fields. ValueError names a line it cannot send.
    """
    options: dict[str, Any] = {}
    for line in script.splitlines():
        text = line.strip()
        if not text or (text.startswith("#") and not text.startswith("#SBATCH")):
            continue
        if not text.startswith("#SBATCH"):
            break
        try:
            words = shlex.split(text[len("#SBATCH"):], comments=True)
        except ValueError as exc:
            raise ValueError(f"the script's line {line.strip()!r} does not parse: {exc}") from None
        while words:
            word = words.pop(0)
            if word.startswith("--"):
                name, equals, value = word[2:].partition("=")
            elif word.startswith("-") and len(word) >= 2 and word[1] in SHORT_OPTIONS:
                name, equals, value = SHORT_OPTIONS[word[1]], "=" if len(word) > 2 else "", word[2:]
            else:
                raise ValueError(f"the script's line {line.strip()!r}: {word!r} is not an sbatch option")
            if not equals and name not in FLAG_OPTIONS:
                if not words:
                    raise ValueError(f"the script's line {line.strip()!r}: --{name} needs a value")
                value = words.pop(0)
            if name in SET_BY_JOBTOWER:
                continue
            if name not in SBATCH_TO_REST:
                raise ValueError(
                    f"the script's line {line.strip()!r}: the sbatch option --{name} cannot go through "
                    f"slurmrestd {REST_API}; leave it out (jobtower's own settings: array=, environment=, "
                    "pause()), or give the cluster a slurm_conf and no rest_url to submit with sbatch"
                )
            options[name] = value if equals or name not in FLAG_OPTIONS else True
    return options


def _said(reply: Any) -> tuple[str, bool]:
    """Return what slurmrestd's errors say, and whether they look like a refused token."""
    errors = reply.get("errors") if isinstance(reply, dict) else None
    if not errors:
        return "", False
    words, auth = [], False
    for error in errors:
        if not isinstance(error, dict):
            words.append(str(error))
            continue
        number = error.get("error_number", error.get("error_code"))
        auth = auth or number in AUTH_ERRORS
        text = ": ".join(str(error[k]) for k in ("description", "error") if error.get(k))
        words.append(f"{text} (Slurm error {number})" if number is not None else text)
    return "; ".join(words), auth


class SlurmRestClient:
    """Requests to one cluster's slurmrestd with its JWT (urllib: no dependency)."""

    def __init__(self, cluster: SlurmCluster) -> None:
        self.cluster = cluster.name
        self.url = cluster.rest_url.rstrip("/")
        # Before anything reads the token: a URL that would carry it in clear is refused (the record may have
        # been written around SlurmCluster.save(), with QuerySet.update() or raw SQL).
        problem = rest_url_problem(self.cluster, cluster.rest_url)
        if problem:
            raise SlurmRestError(problem)
        self.__token = cluster.token.strip()
        if not self.__token:
            raise SlurmRestError(
                f"Slurm cluster {self.cluster!r} has a rest_url ({self.url}) but no token: issue one on the "
                f"cluster with `scontrol token username=<user> lifespan=<seconds>` and set it "
                f"(admin: Slurm clusters > {self.cluster} > new token)"
            )
        try:
            claims = token_claims(self.__token)
        except ValueError as exc:
            raise SlurmRestError(
                f"the token of Slurm cluster {self.cluster!r} is not a Slurm JWT: {exc}. {self.fix}"
            ) from None
        self.user = str(claims.get("sun") or "")
        if not self.user:
            raise SlurmRestError(
                f"the token of Slurm cluster {self.cluster!r} names no user (no 'sun' claim). {self.fix}"
            )
        expires = claims.get("exp")
        if isinstance(expires, (int, float)) and expires < datetime.datetime.now(datetime.UTC).timestamp():
            when = datetime.datetime.fromtimestamp(expires, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
            raise SlurmRestError(f"the token of Slurm cluster {self.cluster!r} expired on {when}. {self.fix}")

    @property
    def fix(self) -> str:
        """Return how to give the cluster a token that works."""
        return (
            f"Issue a new one on the cluster with `scontrol token username={getattr(self, 'user', '') or '<user>'} "
            f"lifespan=<seconds>` and set it on Slurm cluster {self.cluster!r} (admin: Slurm clusters > "
            f"{self.cluster} > new token)"
        )

    def __repr__(self) -> str:
        return f"<SlurmRestClient {self.cluster!r} {self.url} as {self.user!r}>"

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             query: dict[str, str] | None = None, *, ignore: tuple[str, ...] = ()) -> dict[str, Any]:
        """Send one request and return its JSON answer; SlurmRestError with what slurmrestd said."""
        url = f"{self.url}{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query, safe="")
        request = urllib.request.Request(
            url, method=method, data=json.dumps(body).encode() if body is not None else None,
            headers={"X-SLURM-USER-NAME": self.user, "X-SLURM-USER-TOKEN": self.__token,
                     "Content-Type": "application/json", "Accept": "application/json"},
        )
        where = f"slurmrestd of Slurm cluster {self.cluster!r} ({self.url})"
        try:
            with _OPENER.open(request, timeout=REQUEST_TIMEOUT) as answer:
                status, raw = answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        except (TimeoutError, urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SlurmRestUnavailable(f"{where} did not answer {method} {path}: {reason}") from None
        try:
            reply = json.loads(raw) if raw else None
        except ValueError:
            reply = None
        if not isinstance(reply, dict) or 300 <= status < 400:
            text = raw[:200].decode("utf-8", "replace").strip()
            hint = f" (is rest_url the slurmrestd URL, and does it serve openapi/{REST_API}?)"
            if 300 <= status < 400:
                hint = " (a redirect: jobtower follows none, so that the token goes nowhere else; give " \
                       "rest_url the URL slurmrestd answers at)"
            raise SlurmRestError(f"{where} answered {method} {path} with HTTP {status}: {text!r}{hint}")
        said, auth = _said(reply)
        if said and ignore and all(word in said for word in ignore):
            log.debug("%s: %s %s: ignored: %s", self.cluster, method, path, said)
            said = ""
        if status in (401, 403) or (said and auth):
            raise SlurmRestError(
                f"{where} refused the token of user {self.user!r} ({said or f'HTTP {status}'}): it may be "
                f"wrong, expired, or signed with another key than the cluster's. {self.fix}"
            )
        if said or status >= 400:
            raise SlurmRestError(f"{where}: {method} {path}: {said or f'HTTP {status}'}")
        return reply

    # -- the operations the Slurm backend uses ---------------------------------------------------

    def submit(self, script: str, job: dict[str, Any]) -> int:
        """POST job/submit and return the new Slurm job id."""
        reply = self.call("POST", f"/slurm/{REST_API}/job/submit", {"script": script, "job": job})
        job_id = reply.get("job_id")
        if not isinstance(job_id, int) or job_id <= 0:
            raise SlurmRestError(f"slurmrestd of Slurm cluster {self.cluster!r} answered no job id: {reply!r}")
        return job_id

    def jobs(self) -> list[dict[str, Any]]:
        """GET the controller's jobs (all of them, one request)."""
        return list(self.call("GET", f"/slurm/{REST_API}/jobs").get("jobs") or [])

    def job(self, job_id: int) -> list[dict[str, Any]]:
        """GET one job (every task of an array) from the controller."""
        return list(self.call("GET", f"/slurm/{REST_API}/job/{job_id}").get("jobs") or [])

    def accounting(self, job_ids: list[int]) -> list[dict[str, Any]]:
        """GET slurmdbd's records of these jobs (one request for all of them)."""
        query = {"step": ",".join(str(i) for i in job_ids), "skip_steps": "true"}
        return list(self.call("GET", f"/slurmdb/{REST_API}/jobs", query=query).get("jobs") or [])

    def cancel(self, job_id: int) -> None:
        """DELETE the job (every task of an array); an ended job is fine."""
        self.call("DELETE", f"/slurm/{REST_API}/job/{job_id}")

    def update(self, job_id: int, fields: dict[str, Any]) -> None:
        """POST a job update (hold, release)."""
        # slurmrestd 22.05 reports every update of an array as failed, even one that worked.
        self.call("POST", f"/slurm/{REST_API}/job/{job_id}", fields, ignore=("job array update from",))
