# Python watchdog's inotify observer, as Flask's and Django's reloaders and pytest-watch use it.
import sys
import time

from watchdog.events import FileSystemEventHandler
from watchdog.observers.inotify import InotifyObserver


class Print(FileSystemEventHandler):
    def on_any_event(self, e):
        print(e.event_type, e.src_path, getattr(e, "dest_path", "") or "", flush=True)


o = InotifyObserver()
o.schedule(Print(), sys.argv[1], recursive=True)
o.start()
print("READY", flush=True)
while True:
    time.sleep(3600)
