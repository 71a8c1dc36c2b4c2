const res = await fetch('https://api.pathbound.ai/v1/contacts', {
method: 'POST',
headers: {
Authorization: `Bearer ${process.env.PATHBOUND_API_KEY}`,
'Content-Type': 'application/json',
},
body: JSON.stringify({
properties: {
firstname: 'Ada',
lastname: 'Lovelace',
company: 'Analytical Engines',
lifecyclestage: 'lead',
},
}),
});
const { contact } = await res.json();
console.log(contact._id);
