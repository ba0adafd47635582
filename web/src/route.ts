// Client routes live in the URL's fragment (`#/history`): the server never
// sees them, and the setup token in `#/setup?token=` stays out of its logs.
import { useEffect, useState } from "react";

export interface Route {
  path: string;
  params: URLSearchParams;
}

function parse(): Route {
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path = "/", query = ""] = hash.split("?", 2);
  return { path, params: new URLSearchParams(query) };
}

export function useRoute(): Route {
  const [route, setRoute] = useState(parse);
  useEffect(() => {
    const changed = () => setRoute(parse());
    window.addEventListener("hashchange", changed);
    return () => window.removeEventListener("hashchange", changed);
  }, []);
  return route;
}

// `replace`: the current entry goes (a spent setup link leaves no trace in
// the tab's history).
export function go(path: string, replace = false): void {
  if (replace) {
    history.replaceState(null, "", `/#${path}`);
    window.dispatchEvent(new HashChangeEvent("hashchange"));
  } else {
    location.hash = `#${path}`;
  }
}
