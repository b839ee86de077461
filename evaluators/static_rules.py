"""The static checks' rules: what each construct does, which names reach it, and what the author should do
instead. ``evaluators/static_checks.py`` walks a candidate's AST against these tables."""
from __future__ import annotations

# What each rule tells the author to do instead.
ADVICE = {
    "thread": "candidates must do all work inside forward on the calling thread",
    "subprocess": "candidates must not start processes or run commands",
    "stream": "launch all work on the current stream; work on other streams can escape the timed region",
    "frame_inspection": "candidates must not inspect the call stack, tracebacks or code objects",
    "gc": "candidates must not use the garbage collector to reach other objects",
    "sys_modules": "candidates must not reach other modules through the import system",
    "dynamic_code": "write the code out plainly; no dynamic import, exec, eval, compile or unpickling "
                    "(torch.compile is fine)",
    "module_patch": "leave imported modules and their attributes unchanged; pass options as arguments or define "
                    "your own function",
    "ctypes": "use torch.utils.cpp_extension.load_inline or Triton for native code",
    "network": "candidates have no network access",
    "environment": "candidates must not read or change the environment or process information; pass build "
                   "options as arguments (for example load_inline's extra_cuda_cflags)",
    "exit": "return from forward; never exit, raise SystemExit or signal the process",
    "file_write": "candidates may only read files; keep state in memory",
    "global_settings": "leave process-wide torch settings as they are; they change the baseline's numbers too",
}

# (rule, qualified-name pattern, what the construct does). A pattern matches the name itself and anything under it;
# a trailing "*" matches any name that starts with the text before it. The longest matching pattern wins.
PATTERNS: tuple[tuple[str, str, str], ...] = (
    ("thread", "threading", "starts or manages threads"),
    ("thread", "_thread", "starts or manages threads"),
    ("thread", "concurrent", "runs work in an executor"),
    ("thread", "multiprocessing", "starts worker processes"),
    ("thread", "torch.multiprocessing", "starts worker processes"),
    ("thread", "asyncio", "runs work on an event loop"),
    ("thread", "torch.jit.fork", "runs work asynchronously"),
    ("thread", "torch.jit._fork", "runs work asynchronously"),
    ("subprocess", "subprocess", "runs a subprocess"),
    ("subprocess", "_posixsubprocess", "runs a subprocess"),
    ("subprocess", "pty", "starts a pseudo-terminal process"),
    ("subprocess", "os.system", "runs a shell command"),
    ("subprocess", "os.popen", "runs a shell command"),
    ("subprocess", "os.fork*", "forks the process"),
    ("subprocess", "os.spawn*", "spawns a process"),
    ("subprocess", "os.posix_spawn*", "spawns a process"),
    ("subprocess", "os.exec*", "replaces the process"),
    ("subprocess", "os.startfile", "starts a program"),
    ("stream", "torch.Stream", "creates a stream"),
    ("stream", "torch.StreamContext", "switches streams"),
    ("stream", "torch.cuda.Stream", "creates a CUDA stream"),
    ("stream", "torch.cuda.ExternalStream", "wraps an external CUDA stream"),
    ("stream", "torch.cuda.StreamContext", "switches CUDA streams"),
    ("stream", "torch.cuda.stream", "switches CUDA streams"),
    ("stream", "torch.cuda.set_stream", "switches CUDA streams"),
    ("stream", "torch.cuda.streams", "uses CUDA streams"),
    ("stream", "torch.accelerator.set_stream", "switches streams"),
    ("stream", "torch.cpu.Stream", "creates a stream"),
    ("stream", "torch.cpu.stream", "switches streams"),
    ("frame_inspection", "inspect", "inspects live objects and frames"),
    ("frame_inspection", "sys._getframe", "reads the call stack"),
    ("frame_inspection", "sys._current_frames", "reads the call stack"),
    ("frame_inspection", "sys._current_exceptions", "reads other threads' exceptions"),
    ("frame_inspection", "sys.settrace", "installs a tracer"),
    ("frame_inspection", "sys.setprofile", "installs a profiler hook"),
    ("frame_inspection", "sys.gettrace", "reads the tracer"),
    ("frame_inspection", "sys.getprofile", "reads the profiler hook"),
    ("frame_inspection", "sys.monitoring", "installs monitoring hooks"),
    ("frame_inspection", "sys.addaudithook", "installs an audit hook"),
    ("frame_inspection", "sys.last_traceback", "reads a traceback"),
    ("frame_inspection", "traceback.walk_stack", "walks the call stack"),
    ("frame_inspection", "traceback.walk_tb", "walks a traceback"),
    ("frame_inspection", "traceback.extract_stack", "reads the call stack"),
    ("frame_inspection", "traceback.StackSummary", "reads the call stack"),
    ("frame_inspection", "types.FrameType", "handles frame objects"),
    ("frame_inspection", "types.TracebackType", "handles traceback objects"),
    ("gc", "gc", "uses the garbage collector"),
    ("sys_modules", "sys.modules", "reads loaded modules"),
    ("sys_modules", "sys.meta_path", "changes the import machinery"),
    ("sys_modules", "sys.path_hooks", "changes the import machinery"),
    ("sys_modules", "sys.path_importer_cache", "reads the import machinery"),
    ("sys_modules", "__main__", "imports the running program's main module"),
    ("dynamic_code", "builtins", "reaches the builtins module"),
    ("dynamic_code", "builtins.exec", "executes dynamic code"),
    ("dynamic_code", "builtins.eval", "evaluates dynamic code"),
    ("dynamic_code", "builtins.compile", "compiles dynamic code"),
    ("dynamic_code", "builtins.__import__", "imports dynamically"),
    ("dynamic_code", "builtins.globals", "reads module globals"),
    ("dynamic_code", "builtins.locals", "reads a namespace dictionary"),
    ("dynamic_code", "builtins.vars", "reads a namespace dictionary"),
    ("dynamic_code", "builtins.breakpoint", "enters a debugger"),
    ("dynamic_code", "importlib", "imports dynamically"),
    ("dynamic_code", "imp", "imports dynamically"),
    ("dynamic_code", "runpy", "runs other modules"),
    ("dynamic_code", "code", "runs an interactive interpreter"),
    ("dynamic_code", "codeop", "compiles dynamic code"),
    ("dynamic_code", "pdb", "enters a debugger"),
    ("dynamic_code", "types.FunctionType", "builds a function from a code object"),
    ("dynamic_code", "types.CodeType", "builds a code object"),
    ("dynamic_code", "marshal", "loads code objects"),
    ("dynamic_code", "pickle", "unpickles, which can run arbitrary code"),
    ("dynamic_code", "_pickle", "unpickles, which can run arbitrary code"),
    ("dynamic_code", "cloudpickle", "unpickles, which can run arbitrary code"),
    ("dynamic_code", "dill", "unpickles, which can run arbitrary code"),
    ("dynamic_code", "shelve", "unpickles, which can run arbitrary code"),
    ("module_patch", "torch.overrides", "intercepts torch operations"),
    ("module_patch", "torch.utils._python_dispatch", "intercepts torch operations"),
    ("ctypes", "ctypes", "calls native code through ctypes"),
    ("ctypes", "_ctypes", "calls native code through ctypes"),
    ("ctypes", "cffi", "calls native code through cffi"),
    ("ctypes", "mmap", "maps raw memory"),
    ("network", "socket", "opens a network socket"),
    ("network", "_socket", "opens a network socket"),
    ("network", "socketserver", "serves on the network"),
    ("network", "ssl", "uses the network"),
    ("network", "urllib", "uses the network"),
    ("network", "urllib3", "uses the network"),
    ("network", "http", "uses the network"),
    ("network", "requests", "uses the network"),
    ("network", "httpx", "uses the network"),
    ("network", "aiohttp", "uses the network"),
    ("network", "ftplib", "uses the network"),
    ("network", "smtplib", "uses the network"),
    ("network", "telnetlib", "uses the network"),
    ("network", "xmlrpc", "uses the network"),
    ("network", "websocket", "uses the network"),
    ("network", "websockets", "uses the network"),
    ("network", "grpc", "uses the network"),
    ("network", "zmq", "uses the network"),
    ("network", "paramiko", "uses the network"),
    ("network", "torch.distributed", "uses torch.distributed communication"),
    ("network", "torch.hub", "downloads from the network"),
    ("environment", "os.environ", "reads or changes environment variables"),
    ("environment", "os.environb", "reads or changes environment variables"),
    ("environment", "os.getenv", "reads environment variables"),
    ("environment", "os.getenvb", "reads environment variables"),
    ("environment", "os.putenv", "changes environment variables"),
    ("environment", "os.unsetenv", "changes environment variables"),
    ("environment", "dotenv", "reads environment files"),
    ("environment", "keyring", "reads stored credentials"),
    ("exit", "sys.exit", "exits the process"),
    ("exit", "os._exit", "exits the process"),
    ("exit", "os.abort", "aborts the process"),
    ("exit", "os.kill", "sends a signal"),
    ("exit", "os.killpg", "sends a signal"),
    ("exit", "signal", "handles or sends signals"),
    ("exit", "_signal", "handles or sends signals"),
    ("exit", "atexit", "registers exit handlers"),
    ("exit", "builtins.exit", "exits the process"),
    ("exit", "builtins.quit", "exits the process"),
    ("file_write", "os.open", "opens a raw file descriptor"),
    ("file_write", "os.write", "writes to a file descriptor"),
    ("file_write", "os.remove", "deletes a file"),
    ("file_write", "os.unlink", "deletes a file"),
    ("file_write", "os.rmdir", "deletes a directory"),
    ("file_write", "os.removedirs", "deletes directories"),
    ("file_write", "os.rename", "moves a file"),
    ("file_write", "os.renames", "moves a file"),
    ("file_write", "os.replace", "replaces a file"),
    ("file_write", "os.truncate", "truncates a file"),
    ("file_write", "os.ftruncate", "truncates a file"),
    ("file_write", "os.chmod", "changes file permissions"),
    ("file_write", "os.link", "creates a link"),
    ("file_write", "os.symlink", "creates a link"),
    ("file_write", "shutil.rmtree", "deletes a directory tree"),
    ("file_write", "shutil.move", "moves files"),
    ("file_write", "shutil.copy*", "copies files"),
    ("file_write", "torch.save", "writes a file"),
    ("file_write", "numpy.save*", "writes a file"),
    ("global_settings", "torch.set_num_threads", "changes the thread count"),
    ("global_settings", "torch.set_num_interop_threads", "changes the thread count"),
    ("global_settings", "torch.set_float32_matmul_precision", "changes matmul precision"),
    ("global_settings", "torch.set_default_dtype", "changes the default dtype"),
    ("global_settings", "torch.set_default_tensor_type", "changes the default tensor type"),
    ("global_settings", "torch.set_default_device", "changes the default device"),
    ("global_settings", "torch.use_deterministic_algorithms", "changes algorithm selection"),
    ("global_settings", "torch.set_deterministic_debug_mode", "changes algorithm selection"),
    ("global_settings", "torch.set_flush_denormal", "changes floating-point behaviour"),
    ("global_settings", "torch.backends.cuda.preferred_blas_library", "changes the BLAS backend"),
    ("global_settings", "torch.backends.cuda.preferred_linalg_library", "changes the linear algebra backend"),
    ("global_settings", "torch.backends.cuda.enable_*", "changes attention backends"),
    ("global_settings", "torch._C._set_*", "changes a global torch flag"),
)

# Attribute names that reach frames, code objects or interpreter internals whatever object they are read from.
ATTRIBUTE_RULES = {
    "f_back": ("frame_inspection", "walks the call stack"),
    "f_locals": ("frame_inspection", "reads a frame's locals"),
    "f_globals": ("frame_inspection", "reads a frame's globals"),
    "f_builtins": ("frame_inspection", "reads a frame's builtins"),
    "f_code": ("frame_inspection", "reads a frame's code"),
    "f_trace": ("frame_inspection", "installs a frame tracer"),
    "tb_frame": ("frame_inspection", "reads a traceback's frame"),
    "tb_next": ("frame_inspection", "walks a traceback"),
    "gi_frame": ("frame_inspection", "reads a generator's frame"),
    "cr_frame": ("frame_inspection", "reads a coroutine's frame"),
    "ag_frame": ("frame_inspection", "reads an async generator's frame"),
    "__code__": ("frame_inspection", "reads or replaces a code object"),
    "__globals__": ("frame_inspection", "reads a function's globals"),
    "__closure__": ("frame_inspection", "reads a function's closure"),
    "__builtins__": ("dynamic_code", "reaches the builtins"),
    "__import__": ("dynamic_code", "imports dynamically"),
    "__subclasses__": ("dynamic_code", "enumerates classes to reach other objects"),
}

# Builtin names that are resolved as ``builtins.<name>`` when the candidate does not bind them itself.
SENSITIVE_BUILTINS = frozenset({
    "exec", "eval", "compile", "__import__", "globals", "locals", "vars", "breakpoint", "exit", "quit",
    "open", "setattr", "delattr", "getattr",
})

# Builtins that are fine or not depending on their arguments.
CHECKED_AT_CALL = frozenset({"open", "setattr", "delattr", "getattr"})

# Modules whose attributes must not be reached by a computed name: getattr(os, "sys" + "tem") hides os.system.
NO_COMPUTED_GETATTR = frozenset({"os", "sys", "builtins", "time", "gc", "inspect", "io", "shutil", "signal"})

# Modules whose functions open files the way builtin open does.
OPEN_FUNCTIONS = frozenset({"builtins.open", "io.open", "_io.open", "codecs.open", "os.fdopen"})

# Module-level torch settings whose assignment changes every later measurement, named as such in messages.
SETTING_PREFIXES = ("torch.backends", "torch._inductor.config", "torch._dynamo.config", "torch._functorch.config")

WRITE_MODE_CHARS = frozenset("wax+")
MODE_CHARS = frozenset("rwxabt+U")


def matches(qualname: str, pattern: str) -> bool:
    if pattern.endswith("*"):
        return qualname.startswith(pattern[:-1])
    return qualname == pattern or qualname.startswith(pattern + ".")


def match_pattern(qualname: str) -> tuple[str, str] | None:
    """The (rule, what) of the longest pattern that matches ``qualname``, if any."""
    best: tuple[str, str, str] | None = None
    for rule, pattern, what in PATTERNS:
        if matches(qualname, pattern) and (best is None or len(pattern) > len(best[1])):
            best = (rule, pattern, what)
    return None if best is None else (best[0], best[2])
