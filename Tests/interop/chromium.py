"""A small driver for a real headless Chromium over the DevTools protocol (CDP).

Standard library plus `websockets.sync.client`, so browser tests need no Playwright or Selenium.
"""
import base64, contextlib, inspect, json, os, shutil, signal, subprocess, tempfile, time, urllib.request  # noqa: E401
from pathlib import Path

from websockets.sync.client import connect


def binary():
    """The Chromium executable: $CHROMIUM, else `chromium` / `chromium-browser` on PATH, else None."""
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def available():
    """True when a Chromium binary is found (tests fail with a clear message otherwise)."""
    return binary() is not None


class CDPError(RuntimeError):
    """A CDP command failed, or the page threw while evaluating an expression."""


def _poll(check, timeout, what, interval=0.05):
    """check()'s first truthy result, trying every interval; TimeoutError naming what otherwise."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
    return result


def _exception_text(details):
    """The most useful text CDP gives for a thrown exception."""
    return details.get("exception", {}).get("description") or details.get("text", "unknown exception")


class Chromium:
    """One headless Chromium with a throwaway profile, driving its first page target."""

    def __init__(self, start_timeout=20.0):
        self.start_timeout = start_timeout
        self.events = []   # every CDP event ({"method", "params"}), in arrival order
        self.console = []  # console messages and uncaught exceptions, as readable lines
        self._next_id, self._responses = 0, {}
        self.proc = self.ws = self.profile = self._log = None

    def __enter__(self):
        exe = binary()
        if exe is None:
            raise RuntimeError("no chromium binary: set $CHROMIUM or install `chromium`")
        self.profile = tempfile.mkdtemp(prefix="meshbus-chromium-")
        try:
            self._log = open(os.path.join(self.profile, "stderr.log"), "wb+")
            # A session of its own, so exit can end the whole tree (zygotes, renderers, GPU helper).
            self.proc = subprocess.Popen(
                [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--no-default-browser-check", "--disable-dev-shm-usage", "--remote-debugging-port=0",
                 "--disable-features=BackForwardCache",  # a page left is unloaded (its sockets close), as a closed tab
                 f"--user-data-dir={self.profile}", "--window-size=1280,900", "about:blank"],
                stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log, start_new_session=True)
            active = os.path.join(self.profile, "DevToolsActivePort")  # Chromium writes it once it listens
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never proxy

            def page_url():
                if self.proc.poll() is not None:
                    self._log.seek(0)
                    raise RuntimeError(f"chromium exited with {self.proc.returncode}: "
                                       f"{self._log.read()[-1500:].decode(errors='replace')}")
                port, newline, _ = (Path(active).read_text() if os.path.exists(active) else "").partition("\n")
                if newline:
                    with opener.open(f"http://127.0.0.1:{int(port)}/json/list", timeout=5) as response:
                        pages = [t for t in json.load(response) if t.get("type") == "page"]
                    return pages and pages[0].get("webSocketDebuggerUrl")
            url = _poll(page_url, self.start_timeout, f"{active}, then a page target in /json/list")
            no_proxy = {"proxy": None} if "proxy" in inspect.signature(connect).parameters else {}
            # Entered by hand: websockets >= 17.1 warns when connect() is not used as a context manager.
            self.ws = connect(url, max_size=None, open_timeout=self.start_timeout, **no_proxy).__enter__()
            self.send("Runtime.enable")
            self.send("Page.enable")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        if self.ws is not None:
            self.ws.close()
        if self.proc is not None:
            # Waits for the whole group: orphaned helpers stay zombies until PID 1 reaps them (~1s in some VMs).
            gone = lambda: self.proc.poll() is not None and not self._signal(0)  # noqa: E731
            for sig in (signal.SIGTERM, signal.SIGKILL):
                self._signal(sig)
                with contextlib.suppress(TimeoutError):
                    _poll(gone, 5, "chromium to exit")
                    break
        if self._log is not None:
            self._log.close()
        if self.profile is not None:
            shutil.rmtree(self.profile, ignore_errors=True)
        self.proc = self.ws = self.profile = self._log = None

    def _signal(self, sig):
        """Signals Chromium's process group (it leads one); False once no member is left."""
        with contextlib.suppress(ProcessLookupError):
            return os.killpg(self.proc.pid, sig) or True
        return False

    def _pump(self, done, timeout, what):
        """The one reader loop: files replies by id and events in order until done() holds."""
        deadline = time.monotonic() + timeout
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
            try:
                message = json.loads(self.ws.recv(timeout=remaining))
            except TimeoutError:
                continue
            if "id" in message:
                self._responses[message["id"]] = message
                continue
            self.events.append(message)
            method, params = message.get("method"), message.get("params", {})
            if method == "Runtime.consoleAPICalled":
                args = (str(a.get("value", a.get("description", a.get("type")))) for a in params.get("args", []))
                self.console.append(f"console.{params.get('type')}: {' '.join(args)}")
            elif method == "Runtime.exceptionThrown":
                self.console.append(f"exception: {_exception_text(params.get('exceptionDetails', {}))}")

    def send(self, method, params=None, timeout=10):
        """Sends one CDP command and returns its result; raises CDPError with CDP's message."""
        ident = self._next_id = self._next_id + 1
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params or {}}))
        self._pump(lambda: ident in self._responses, timeout, f"the reply to {method}")
        reply = self._responses.pop(ident)
        if error := reply.get("error"):
            raise CDPError(f"{method} failed: {error.get('message')} {error.get('data', '')}".strip())
        return reply.get("result", {})

    def navigate(self, url, timeout=15):
        """Loads url and waits for its Page.loadEventFired."""
        mark = len(self.events)
        result = self.send("Page.navigate", {"url": url}, timeout=timeout)
        if result.get("errorText"):
            raise CDPError(f"navigating to {url} failed: {result['errorText']}")
        loaded = lambda: any(e.get("method") == "Page.loadEventFired" for e in self.events[mark:])  # noqa: E731
        self._pump(loaded, timeout, f"the load event of {url}")

    def evaluate(self, expression, timeout=10):
        """The JSON value of expression in the page (promises awaited); CDPError if it threw."""
        params = {"expression": expression, "returnByValue": True, "awaitPromise": True}
        result = self.send("Runtime.evaluate", params, timeout=timeout)
        if "exceptionDetails" in result:
            raise CDPError(f"{expression!r} threw: {_exception_text(result['exceptionDetails'])}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression, what, timeout=20.0, interval=0.1):
        """Polls expression until truthy (a throw counts as not yet) and returns it; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.evaluate(expression)
                if value:
                    return value
            except CDPError as error:
                value = error
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value {value!r}; "
                                     f"console: {self.console[-10:]}")
            time.sleep(interval)

    def add_script_on_new_document(self, source):
        """Runs source before page scripts in every later document (e.g. to inject a fake API)."""
        return self.send("Page.addScriptToEvaluateOnNewDocument", {"source": source})["identifier"]

    def screenshot(self, path):
        """Writes a PNG of the whole page (not only the viewport) to path and returns path."""
        size = self.send("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        params = {"format": "png", "captureBeyondViewport": True, "clip": clip}
        data = self.send("Page.captureScreenshot", params, timeout=30)["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return path

    def _on_element(self, selector, body):
        """Runs JS body with `el` bound to the first match of selector; CDPError if none matches."""
        sel = json.dumps(selector)
        self.evaluate(f"(() => {{ const el = document.querySelector({sel});"
                      f" if (!el) throw new Error('no element matches ' + {sel}); {body} }})()")

    def type_into(self, selector, text):
        """Sets an input's value and fires `input`, as typing would for most page scripts."""
        self._on_element(selector, f"el.value = {json.dumps(text)};"
                                   " el.dispatchEvent(new Event('input', {bubbles: true}));")

    def click(self, selector):
        """Clicks the first element matching selector."""
        self._on_element(selector, "el.click();")
