// Where the API lives. Keep the page and the API on the same site (one host name, any port):
// the browser then sends the SameSite cookies the API sets. See the README, "Using it from a
// browser app".
export const API_URL = "http://localhost:8000";
