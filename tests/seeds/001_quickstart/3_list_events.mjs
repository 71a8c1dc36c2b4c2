const url = new URL('https://api.pathbound.ai/v1/events');
url.searchParams.set('limit', '5');
url.searchParams.set('sort_dir', 'desc');
const res = await fetch(url, {
headers: { Authorization: `Bearer ${process.env.PATHBOUND_API_KEY}` },
});
const { events } = await res.json();
console.log(events);
