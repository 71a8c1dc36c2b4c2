const res = await fetch('https://api.pathbound.ai/v1/auth/status', {
headers: { Authorization: `Bearer ${process.env.PATHBOUND_API_KEY}` },
});
console.log(await res.json());
